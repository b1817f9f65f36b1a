// Jest global setup of the 'integration' project: one real control plane per test run.
//
// A plane that is already up (hack/controlplane.sh status) is reused; otherwise this run starts
// one (building the binaries on first use). Every run holds the plane while it runs (a file
// holders/<pid> in the plane's state folder), and global-teardown.ts stops a plane that a test run
// started once its last holder leaves, so concurrent runs on one machine share it safely. A plane
// started by hand (`hack/controlplane.sh up`) is never stopped by tests. KATA_CP_KEEP=1 leaves
// the plane up at the end of the run.
import { CONTROLPLANE_SCRIPT, KUBECONFIG_ENV, controlplane, holdPlane } from './cluster.js';

export default async function globalSetup(): Promise<void> {
  let path = await controlplane(['status']).catch(() => '');
  let started = false;
  if (!path) {
    process.stderr.write(`\nintegration: starting the control plane (${CONTROLPLANE_SCRIPT} up)\n`);
    path = await controlplane(['up']);
    started = true;
  }
  if (!path.startsWith('/')) throw new Error(`controlplane.sh printed no kubeconfig path: ${path}`);
  holdPlane(path, started);
  // A run that ended between our status and our hold may have stopped it: make sure it is up.
  if (!started) path = await controlplane(['up']);
  // Workers are started after global setup and inherit this environment.
  process.env[KUBECONFIG_ENV] = path;
}

// Jest global setup of the 'integration' project: one real control plane per test run.
// A plane that is already up (hack/controlplane.sh status) is reused and left running;
// otherwise this run starts one (building the binaries on first use) and global-teardown.ts
// stops it. KATA_CP_KEEP=1 leaves a plane this run started up for the next run.
import { CONTROLPLANE_SCRIPT, KUBECONFIG_ENV, controlplane } from './cluster.js';

export default async function globalSetup(): Promise<void> {
  let path = await controlplane(['status']).catch(() => '');
  if (path) {
    globalThis.__KATA_CP_STARTED_BY_RUN__ = false;
  } else {
    process.stderr.write(`\nintegration: starting the control plane (${CONTROLPLANE_SCRIPT} up)\n`);
    path = await controlplane(['up']);
    globalThis.__KATA_CP_STARTED_BY_RUN__ = true;
  }
  if (!path.startsWith('/')) throw new Error(`controlplane.sh printed no kubeconfig path: ${path}`);
  // Workers are started after global setup and inherit this environment.
  process.env[KUBECONFIG_ENV] = path;
}

// Access to the real control plane (hack/controlplane.sh) for integration tests.
//
// The Jest global setup (global-setup.ts) brings a plane up, or reuses one already up, and puts
// the admin kubeconfig's absolute path in process.env.KUBECONFIG_TEST. Tests use:
//   adminKubeConfig()                   a KubeConfig for the admin (group system:masters)
//   serviceAccountKubeConfig(ns, sa)    a client certificate identity exactly as ServiceAccount
//                                       <ns>/<sa> is authorized (RBAC applies; no Secret or token)
//   tokenKubeConfig(token)              the plane's server and CA with a bearer token
//   freshNamespace(prefix)              a namespace of its own for a test file
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { newKubeConfig } from '../../src/kube/shared-agent.js';

const execFileAsync = promisify(execFile);

// KATA_REPO_ROOT: set when this module runs bundled elsewhere (hack/demo.ts).
export const REPO_ROOT =
  process.env['KATA_REPO_ROOT'] ?? resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CONTROLPLANE_SCRIPT = resolve(REPO_ROOT, 'hack/controlplane.sh');
/** The environment variable that carries the admin kubeconfig path to test files. */
export const KUBECONFIG_ENV = 'KUBECONFIG_TEST';

/** Runs hack/controlplane.sh with an argv array; resolves to its stdout's last non-empty line. */
export async function controlplane(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 60 * 60_000, // a cold build of kube-apiserver takes many minutes
): Promise<string> {
  const { stdout } = await execFileAsync(CONTROLPLANE_SCRIPT, args, {
    env,
    timeout: timeoutMs,
    maxBuffer: 16 * 1024 * 1024,
  });
  return lastLine(stdout);
}

export function lastLine(text: string): string {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return lines[lines.length - 1] ?? '';
}

/** The admin kubeconfig path: from KUBECONFIG_TEST, else from a plane that is already up. */
export async function adminKubeConfigPath(): Promise<string> {
  const fromEnv = process.env[KUBECONFIG_ENV];
  if (fromEnv) return fromEnv;
  const path = await controlplane(['status']).catch(() => '');
  if (!path) {
    throw new Error(
      `${KUBECONFIG_ENV} is unset and no control plane is up (hack/controlplane.sh up)`,
    );
  }
  process.env[KUBECONFIG_ENV] = path;
  return path;
}

export async function adminKubeConfig(): Promise<KubeConfig> {
  const kc = newKubeConfig();
  kc.loadFromFile(await adminKubeConfigPath());
  return kc;
}

/** Path of a kubeconfig whose client certificate says ServiceAccount <ns>/<sa>. */
export async function serviceAccountKubeConfigPath(ns: string, sa: string): Promise<string> {
  await adminKubeConfigPath();
  return controlplane(['kubeconfig-for', ns, sa]);
}

export async function serviceAccountKubeConfig(ns: string, sa: string): Promise<KubeConfig> {
  const kc = newKubeConfig();
  kc.loadFromFile(await serviceAccountKubeConfigPath(ns, sa));
  return kc;
}

/** The plane's server and CA with a bearer token (e.g. one from the TokenRequest API). */
export async function tokenKubeConfig(token: string): Promise<KubeConfig> {
  return withBearerToken(await adminKubeConfig(), token);
}

/** `admin`'s current cluster with a bearer token instead of its credentials. */
export function withBearerToken(admin: KubeConfig, token: string): KubeConfig {
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error('the admin kubeconfig has no cluster');
  const kc = newKubeConfig();
  kc.loadFromOptions({
    clusters: [cluster],
    users: [{ name: 'token', token }],
    contexts: [{ name: 'token', cluster: cluster.name, user: 'token' }],
    currentContext: 'token',
  });
  return kc;
}

/**
 * Creates a namespace named <prefix>-<random> and returns its name. There is no
 * kube-controller-manager, so a deleted namespace stays Terminating: tests need not delete theirs
 * (each run's plane is thrown away by `down`).
 */
export async function freshNamespace(prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`.slice(0, 63);
  const core = (await adminKubeConfig()).makeApiClient(CoreV1Api);
  await core.createNamespace({
    body: { metadata: { name, labels: { 'kata.sandbox.io/test': prefix } } },
  });
  return name;
}

// --- sharing one plane between concurrent test runs (used by global setup/teardown) ---------

const STARTED_MARKER = 'started-by-test-run';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Marks the plane of this kubeconfig as held by this process (and as started by a test run). */
export function holdPlane(kubeconfigPath: string, startedByThisRun: boolean): void {
  const dir = dirname(kubeconfigPath);
  mkdirSync(join(dir, 'holders'), { recursive: true });
  writeFileSync(join(dir, 'holders', String(process.pid)), '');
  if (startedByThisRun) writeFileSync(join(dir, STARTED_MARKER), String(process.pid));
}

/** Drops this process's hold; true when the plane was started by a test run and nobody holds it. */
export function releasePlane(kubeconfigPath: string): boolean {
  const dir = dirname(kubeconfigPath);
  const holders = join(dir, 'holders');
  rmSync(join(holders, String(process.pid)), { force: true });
  if (!existsSync(join(dir, STARTED_MARKER))) return false;
  let others: string[] = [];
  try {
    others = readdirSync(holders).filter((name) => {
      const pid = Number(name);
      if (Number.isInteger(pid) && pidAlive(pid)) return true;
      rmSync(join(holders, name), { force: true }); // a run that died without its teardown
      return false;
    });
  } catch {
    // no holders folder: nobody holds it
  }
  return others.length === 0;
}

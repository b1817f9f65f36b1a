// Runs the real kata-controller (bundled from src/ with esbuild) as a child process, with the
// ServiceAccount identity and RBAC from deploy/, against the test control plane.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { build } from 'esbuild';
import { mkdtempSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { adminKubeConfigPath, REPO_ROOT, serviceAccountKubeConfigPath } from './cluster.js';

const execFileAsync = promisify(execFile);
const CRD_DIR = path.join(REPO_ROOT, 'deploy/crds');

export async function kubectl(args: string[], input?: string, timeoutMs = 60_000): Promise<string> {
  const kubeconfig = await adminKubeConfigPath();
  const child = execFileAsync('kubectl', ['--kubeconfig', kubeconfig, ...args], {
    timeout: timeoutMs,
  });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  return (await child).stdout;
}

/** The CRDs, namespace kata-system and the controller's RBAC, as an admin would install them. */
export async function installControllerPrereqs(): Promise<void> {
  await kubectl(['apply', '--server-side', '-f', CRD_DIR]);
  await kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/katasandboxes.kata.sandbox.io',
    'crd/katawarmpools.kata.sandbox.io',
  ]);
  await kubectl(['create', 'namespace', 'kata-system']).catch(() => '');
  await kubectl([
    'apply',
    '--server-side',
    '-f',
    path.join(REPO_ROOT, 'deploy/rbac/controller.yaml'),
  ]);
}

// One bundle per entry: a second entry (e.g. the node agent) must not get the first one's bundle.
const bundled = new Map<string, Promise<string>>();

export function bundleEntry(entry: string, name: string): Promise<string> {
  const cached = bundled.get(entry);
  if (cached) return cached;
  const made = (async () => {
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'kata-bundle-')), `${name}.mjs`);
    await build({
      entryPoints: [path.join(REPO_ROOT, entry)],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: out,
      banner: {
        js: "import{createRequire}from'module';const require=createRequire(import.meta.url);",
      },
      logLevel: 'error',
    });
    return out;
  })();
  bundled.set(entry, made);
  return made;
}

/** Polls `fn` until it returns something other than undefined (errors count as "not yet"). */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export type RunningController = RunningProcess;

export interface ControllerScope {
  /** Only this namespace's sandboxes, so runs sharing one plane do not reconcile each other's. */
  namespace: string;
  /** An election Lease of this run's own (the admin grants the controller's SA update on it). */
  electionId: string;
}

/** Lets the controller's ServiceAccount hold a test's own election Lease. */
export async function grantElectionLease(electionId: string): Promise<void> {
  const role = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name: electionId, namespace: 'kata-system' },
    rules: [
      {
        apiGroups: ['coordination.k8s.io'],
        resources: ['leases'],
        resourceNames: [electionId],
        verbs: ['update', 'patch'],
      },
    ],
  };
  const binding = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: electionId, namespace: 'kata-system' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: electionId },
    subjects: [{ kind: 'ServiceAccount', name: 'kata-controller', namespace: 'kata-system' }],
  };
  await kubectl(
    ['apply', '--server-side', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [role, binding] }),
  );
}

/** Removes what grantElectionLease made, and the Lease itself. */
export async function revokeElectionLease(electionId: string): Promise<void> {
  await kubectl([
    ...['-n', 'kata-system', 'delete', 'role,rolebinding,lease', electionId],
    '--ignore-not-found',
  ]);
}

export interface RunningProcess {
  child: ChildProcess;
  logFile: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Runs a bundled component with `args`, its output appended to `logFile`. */
export function spawnComponent(
  bundle: string,
  args: readonly string[],
  logFile: string,
): RunningProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [bundle, ...args], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, LOG_LEVEL: 'debug' },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    logFile,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/**
 * Without a scope the controller watches every namespace and contends for kata-controller; a
 * scope with `leaderElect: false` runs a replica that reconciles without any election.
 */
export async function startController(
  identity: string,
  scope?: ControllerScope | { namespace: string; leaderElect: false },
): Promise<RunningController> {
  const bundle = await bundleEntry('src/controllers/main.ts', 'kata-controller');
  const kubeconfig = await serviceAccountKubeConfigPath('kata-system', 'kata-controller');
  const logFile = path.join(path.dirname(bundle), `${identity}.log`);
  return spawnComponent(
    bundle,
    [
      ...['--kubeconfig', kubeconfig, '--metrics-port', '0', '--identity', identity],
      // Plain HTTP on loopback: the harness polls /readyz without a token.
      ...['--metrics-secure', 'false'],
      ...(scope ? ['--watch-namespace', scope.namespace] : []),
      ...(scope && 'electionId' in scope ? ['--leader-election-id', scope.electionId] : []),
      ...(scope && 'leaderElect' in scope ? ['--leader-elect', 'false'] : []),
    ],
    logFile,
  );
}

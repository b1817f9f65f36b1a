// The real stack a create benchmark runs against, as `make demo` runs it: the local control plane
// (held while in use), the CRD and RBAC, the controller and node agent as detached processes with
// TokenRequest identities, scoped to a namespace and node of their own. Teardown runs once, newest
// first, on the way out or on a signal: the sandboxes are deleted while the node agent still runs
// (so their VMs stop and finalizers go), then the components, the plane and the scratch dir.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  adminKubeConfig,
  controlplane,
  freshNamespace,
  holdPlane,
  KUBECONFIG_ENV,
  releasePlane,
} from '../test/integration/cluster.js';
import {
  grantElectionLease,
  revokeElectionLease,
  installControllerPrereqs,
  kubectl,
} from '../test/integration/controller-harness.js';
import { installNodeAgentRbac } from '../test/e2e/node-agent-harness.js';
import { builtHostFsBinary } from '../test/integration/host-fs-binary.js';
import { removeScratch, SandboxApi } from '../test/e2e/sandbox-api.js';
import {
  bundleComponent,
  serviceAccountIdentity,
  startComponent,
  type Component,
} from '../hack/local-components.js';

export const REPO = process.env['KATA_REPO_ROOT'] ?? process.cwd();

export interface BenchStack {
  /** Scratch dir of this run; `roots` below it is the allowed host path root. */
  base: string;
  roots: string;
  api: SandboxApi;
  agent: Component;
  /** The node agent's metrics port. */
  port: number;
  /** Registers something to undo at teardown (run before what was registered earlier). */
  onTeardown(stop: () => Promise<unknown>): void;
  teardown(): Promise<void>;
}

/**
 * Removes a namespace and everything in it from a plane that has no namespace controller (a bare
 * kube-apiserver): deletes each namespaced kind in it, then the namespace, then clears the
 * namespace's finalizer as the namespace controller would once it is empty. A bench leaves
 * nothing behind on a plane it shares.
 */
export async function purgeNamespace(ns: string): Promise<void> {
  const kinds = (await kubectl(['api-resources', '--namespaced', '--verbs=delete', '-o', 'name']))
    .split('\n')
    .filter(Boolean);
  await kubectl(
    ['-n', ns, 'delete', kinds.join(','), '--all', '--wait=true', '--timeout=180s'],
    undefined,
    200_000,
  );
  await kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']);
  const finalize = {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: ns },
    spec: { finalizers: [] },
  };
  await kubectl(
    ['replace', '--raw', `/api/v1/namespaces/${ns}/finalize`, '-f', '-'],
    JSON.stringify(finalize),
  ).catch((err: unknown) => {
    if (!/NotFound|not found/.test(String(err))) throw err;
  });
}

/** Starts the stack; `name` prefixes node, namespace and scratch dir. */
export async function startBenchStack(
  name: string,
  extraAgentArgs: (base: string) => string[] = () => [],
): Promise<BenchStack> {
  const base = mkdtempSync(path.join(tmpdir(), `kata-bench-${name}-`));
  const roots = path.join(base, 'roots');
  mkdirSync(roots, { recursive: true });
  const node = `bench-${name}-${process.pid}`;
  const electionId = `kata-controller-bench-${name}-${process.pid}`;
  const stops: (() => Promise<unknown>)[] = [];
  let tearing: Promise<void> | undefined;
  const teardown = (): Promise<void> =>
    (tearing ??= (async () => {
      for (const s of [...stops].reverse()) {
        await s().catch((err: unknown) => console.error(String(err)));
      }
      await removeScratch(base);
    })());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      console.error(`${sig}: deleting the sandboxes and stopping (please wait)`);
      void teardown().then(() => process.exit(130));
    });
  }

  try {
    let planPath = await controlplane(['status']).catch(() => '');
    const started = !planPath.startsWith('/');
    if (started) planPath = await controlplane(['up']);
    holdPlane(planPath, started);
    process.env[KUBECONFIG_ENV] = planPath;
    stops.push(async () => {
      if (releasePlane(planPath)) await controlplane(['down']);
    });
    await installControllerPrereqs();
    await installNodeAgentRbac();
    await grantElectionLease(electionId);
    stops.push(() => revokeElectionLease(electionId));
    const ns = await freshNamespace(`bench-${name}`);
    stops.push(() => purgeNamespace(ns));
    const bundles = path.join(REPO, 'node_modules/.cache/bench');
    const [controllerBundle, agentBundle] = await Promise.all([
      bundleComponent(REPO, 'src/controllers/main.ts', 'kata-controller', bundles),
      bundleComponent(REPO, 'src/node-agent/main.ts', 'kata-node-agent', bundles),
    ]);
    const ids = path.join(base, 'identity');
    const controllerId = await serviceAccountIdentity(planPath, 'kata-controller', ids);
    const agentId = await serviceAccountIdentity(planPath, 'kata-node-agent', ids);
    stops.push(async () => (controllerId.close(), agentId.close()));
    const controller = startComponent(
      'kata-controller',
      controllerBundle,
      [
        // Plain HTTP on loopback: waitReady polls /readyz without a token.
        ...['--kubeconfig', controllerId.kubeconfig, '--metrics-port', '0'],
        ...['--metrics-secure', 'false'],
        ...['--identity', `bench-${name}-${process.pid}`, '--watch-namespace', ns],
        ...['--leader-election-id', electionId],
      ],
      path.join(base, 'controller.log'),
    );
    stops.push(() => controller.stop());
    await controller.waitReady(await controller.metricsPort());
    const agent = startComponent(
      'kata-node-agent',
      agentBundle,
      [
        ...['--kubeconfig', agentId.kubeconfig, '--node-name', node, '--metrics-port', '0'],
        ...['--metrics-secure', 'false'],
        ...['--state-dir', path.join(base, 'state'), '--run-dir', path.join(base, 'run')],
        ...['--log-dir', path.join(base, 'logs'), '--allowed-host-path-roots', roots],
        ...['--default-accelerator', 'auto', '--host-fs-binary', builtHostFsBinary()],
        ...extraAgentArgs(base),
      ],
      path.join(base, 'node-agent.log'),
    );
    stops.push(() =>
      kubectl(['-n', 'kata-system', 'delete', 'lease', `kata-node-${node}`, '--ignore-not-found']),
    );
    stops.push(() => agent.stop());
    const port = await agent.metricsPort();
    await agent.waitReady(port);
    stops.push(() =>
      kubectl(['-n', ns, 'delete', 'katasandboxes', '--all', '--timeout=180s'], undefined, 200_000),
    );
    return {
      base,
      roots,
      api: new SandboxApi(await adminKubeConfig(), ns, node),
      agent,
      port,
      onTeardown: (stop) => stops.push(stop),
      teardown,
    };
  } catch (err) {
    await teardown();
    throw err;
  }
}

/** Deletes sandboxes and waits until they are gone (their hosts cleaned). */
export async function deleteAll(api: SandboxApi, names: readonly string[]): Promise<void> {
  for (const n of names) await api.delete(n);
  for (const n of names) await api.waitFor(n, 'deleted', (sb) => sb === undefined, 180_000);
}

/** The median of the finite values (the mean of the middle two for an even count); NaN if none. */
export function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** median, min and max of durations in milliseconds, printed in seconds. */
export function stats(xs: readonly number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const f = (v: number) => `${(v / 1000).toFixed(2)} s`;
  return `median ${f(median(xs))}  min ${f(s[0]!)}  max ${f(s[s.length - 1]!)}`;
}

/** Sum of the node agent's RPC histogram per method, from its /metrics. */
export async function rpcSums(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^kata_node_agent_rpc_duration_seconds_sum\{[^}]*method="([^"]+)"[^}]*\} (\S+)$/.exec(
      line,
    );
    if (m) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return out;
}

/** Milliseconds spent in the methods matching `re` between two rpcSums. */
export function rpcDeltaMs(
  after: Map<string, number>,
  before: Map<string, number>,
  re: RegExp,
): number {
  let s = 0;
  for (const [k, v] of after) if (re.test(k)) s += v - (before.get(k) ?? 0);
  return s * 1000;
}

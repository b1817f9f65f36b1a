// Create → Running of a KataSandbox on the real stack (local control plane, controller and node
// agent as processes with their ServiceAccount identities, QEMU under whatever accelerator works):
//  1. one sandbox at a time, RUNS times: the time split into schedule (create → Scheduled), host
//     preparation (Scheduled → QEMU started), boot (QEMU start → agent answers), agent calls
//     (CreateSandbox and the network calls, from the node agent's RPC histogram) and container
//     start (CreateContainer + StartContainer); median, min, max of each;
//  2. BATCH sandboxes created at once: time until all are Running, and the node agent's peak RSS.
// Usage: node sandbox-create.mjs [RUNS=5] [BATCH=10]   (run from the repository root)
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import type { KataSandbox } from '../src/crds/index.js';
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
import { installNodeAgentRbac, makeBusyboxRootfs } from '../test/e2e/node-agent-harness.js';
import { phase, removeScratch, SandboxApi } from '../test/e2e/sandbox-api.js';
import {
  bundleComponent,
  serviceAccountIdentity,
  startComponent,
} from '../hack/local-components.js';

const REPO = process.env['KATA_REPO_ROOT'] ?? process.cwd();
const RUNS = Number(process.argv[2] ?? 5);
const BATCH = Number(process.argv[3] ?? 10);
const NODE = `bench-${process.pid}`;
const ELECTION_ID = `kata-controller-bench-${process.pid}`;

const base = mkdtempSync(path.join(tmpdir(), 'kata-bench-create-'));
const roots = path.join(base, 'roots');
const dirs = {
  stateDir: path.join(base, 'state'),
  runDir: path.join(base, 'run'),
  logDir: path.join(base, 'logs'),
  roots: [roots],
};

const ms = (a: string | undefined, b: string | undefined): number =>
  a && b ? new Date(b).getTime() - new Date(a).getTime() : NaN;
const cond = (sb: KataSandbox, type: string): string | undefined =>
  sb.status?.conditions?.find((c) => c.type === type)?.lastTransitionTime;

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const med = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  const f = (v: number) => `${(v / 1000).toFixed(2)} s`;
  return `median ${f(med)}  min ${f(s[0]!)}  max ${f(s[s.length - 1]!)}`;
}

/** Sum of the node agent's RPC histogram per method, from its /metrics. */
async function rpcSums(port: number): Promise<Map<string, number>> {
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

function delta(after: Map<string, number>, before: Map<string, number>, re: RegExp): number {
  let s = 0;
  for (const [k, v] of after) if (re.test(k)) s += v - (before.get(k) ?? 0);
  return s * 1000;
}

function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

const spec = (rootfs: string) => ({
  terminationGracePeriodSeconds: 2,
  containers: [
    {
      name: 'main',
      rootfs: { hostPath: { path: rootfs } },
      command: ['/bin/sh', '-c', "trap 'exit 0' TERM; echo up; while true; do sleep 1; done"],
    },
  ],
});

async function main(): Promise<void> {
  let planPath = await controlplane(['status']).catch(() => '');
  const started = !planPath.startsWith('/');
  if (started) planPath = await controlplane(['up']);
  holdPlane(planPath, started);
  process.env[KUBECONFIG_ENV] = planPath;
  const stops: (() => Promise<unknown>)[] = (allStops = [
    async () => {
      if (releasePlane(planPath)) await controlplane(['down']);
    },
  ]);
  try {
    await installControllerPrereqs();
    await installNodeAgentRbac();
    await grantElectionLease(ELECTION_ID);
    stops.push(() => revokeElectionLease(ELECTION_ID));
    const ns = await freshNamespace('bench-create');
    stops.push(() => kubectl(['delete', 'namespace', ns, '--wait=false']));
    mkdirSync(roots, { recursive: true });
    const rootfs = path.join(roots, 'busybox');
    makeBusyboxRootfs(rootfs);
    // The components as `make demo` runs them: TokenRequest identities, detached processes (a
    // Ctrl-C reaches only this process, which deletes the sandboxes before stopping them).
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
        ...['--kubeconfig', controllerId.kubeconfig, '--metrics-port', '0'],
        ...['--identity', `bench-${process.pid}`, '--watch-namespace', ns],
        ...['--leader-election-id', ELECTION_ID],
      ],
      path.join(base, 'controller.log'),
    );
    stops.push(() => controller.stop());
    await controller.waitReady(await controller.metricsPort());
    const agent = startComponent(
      'kata-node-agent',
      agentBundle,
      [
        ...['--kubeconfig', agentId.kubeconfig, '--node-name', NODE, '--metrics-port', '0'],
        ...['--state-dir', dirs.stateDir, '--run-dir', dirs.runDir, '--log-dir', dirs.logDir],
        ...['--allowed-host-path-roots', roots, '--default-accelerator', 'auto'],
      ],
      path.join(base, 'node-agent.log'),
    );
    stops.push(() =>
      kubectl(['-n', 'kata-system', 'delete', 'lease', `kata-node-${NODE}`, '--ignore-not-found']),
    );
    stops.push(() => agent.stop());
    const port = await agent.metricsPort();
    await agent.waitReady(port);
    // First in teardown (stops run in reverse): whatever sandboxes are left (an interrupted run)
    // are deleted while the node agent still runs to stop their VMs and drop their finalizers.
    stops.push(() =>
      kubectl(['-n', ns, 'delete', 'katasandboxes', '--all', '--timeout=180s'], undefined, 200_000),
    );
    const api = new SandboxApi(await adminKubeConfig(), ns, NODE);
    const deleteAll = async (names: string[]) => {
      for (const n of names) await api.delete(n);
      for (const n of names) await api.waitFor(n, 'deleted', (sb) => sb === undefined, 180_000);
    };

    let accelerator = '?';
    const parts: Record<string, number[]> = {
      total: [],
      schedule: [],
      host: [],
      boot: [],
      agent: [],
      container: [],
    };
    for (let i = 0; i < RUNS; i++) {
      const before = await rpcSums(port);
      const t0 = new Date().toISOString();
      await api.create(`one-${i}`, spec(rootfs));
      const sb = (await api.waitFor(`one-${i}`, 'Running', phase('Running'), 600_000))!;
      const after = await rpcSums(port);
      const vm = sb.status!.vm!;
      accelerator = vm.accelerator ?? '?';
      parts['total']!.push(ms(t0, cond(sb, 'Ready')));
      parts['schedule']!.push(ms(t0, cond(sb, 'Scheduled')));
      parts['host']!.push(ms(cond(sb, 'Scheduled'), vm.startedAt));
      parts['boot']!.push(vm.bootMillis ?? NaN);
      parts['agent']!.push(
        delta(
          after,
          before,
          /CreateSandbox|UpdateInterface|UpdateRoutes|ListInterfaces|ListRoutes/,
        ),
      );
      parts['container']!.push(delta(after, before, /CreateContainer|StartContainer/));
      console.log(
        `run ${i + 1}/${RUNS}: create → Running ${(parts['total']!.at(-1)! / 1000).toFixed(2)} s`,
      );
      await deleteAll([`one-${i}`]);
    }
    console.log(
      `\ncreate → Running, one sandbox at a time (${RUNS} runs, accelerator ${accelerator}):`,
    );
    const label: Record<string, string> = {
      total: 'create → Running (Ready)',
      schedule: '  schedule (create → Scheduled)',
      host: '  host preparation (→ QEMU start)',
      boot: '  boot (QEMU start → agent answers)',
      agent: '  agent calls (CreateSandbox, network)',
      container: '  container start (Create+StartContainer)',
    };
    for (const [k, v] of Object.entries(parts)) console.log(`${label[k]!.padEnd(44)} ${stats(v)}`);

    const names = Array.from({ length: BATCH }, (_, i) => `batch-${i}`);
    const t0 = Date.now();
    await Promise.all(names.map((n) => api.create(n, spec(rootfs))));
    let rss = 0;
    const sampler = setInterval(() => (rss = Math.max(rss, peakRssMiB(agent.child.pid!))), 500);
    await Promise.all(names.map((n) => api.waitFor(n, 'Running', phase('Running'), 1_200_000)));
    const allRunning = Date.now() - t0;
    clearInterval(sampler);
    rss = Math.max(rss, peakRssMiB(agent.child.pid!));
    console.log(
      `\n${BATCH} sandboxes created at once: all Running after ${(allRunning / 1000).toFixed(1)} s; node agent peak RSS ${rss.toFixed(0)} MiB`,
    );
    await deleteAll(names);
    console.log(
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    await teardown(stops);
  }
}

let tearing: Promise<void> | undefined;
let allStops: (() => Promise<unknown>)[] = [];
/** Runs every stop once, newest first, then removes the scratch dir (killing what names it). */
function teardown(stops = allStops): Promise<void> {
  return (tearing ??= (async () => {
    for (const s of [...stops].reverse()) {
      await s().catch((err: unknown) => console.error(String(err)));
    }
    await removeScratch(base);
  })());
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    console.error(`${sig}: deleting the sandboxes and stopping (please wait)`);
    void teardown().then(() => process.exit(130));
  });
}

await main();
process.exit(0);

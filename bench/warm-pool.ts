// Create → Running from a warm pool beside a cold create, on the real stack (local control plane,
// controller and node agent processes, QEMU under whatever accelerator works): a KataWarmPool of
// one VM per node; each warm run waits until a VM is ready, creates a sandbox of the pool's shape
// and splits its time into schedule (create → Scheduled), claim (taking the VM: share, network,
// drives; status.vm.claimMillis), agent calls (CreateSandbox, network) and container start
// (CreateContainer + StartContainer); cold runs use a shape no pool keeps. QEMU CPU-seconds of
// the sandbox's VM over its create are printed beside the wall times (TCG wall time follows host
// load). Ends with one line `bench-result {json}`.
// Usage: node warm-pool.mjs [WARM_RUNS=10] [COLD_RUNS=3]   (run from the repository root)
import { CustomObjectsApi } from '@kubernetes/client-node';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import type { KataSandbox, KataWarmPool } from '../src/crds/index.js';
import { adminKubeConfig } from '../test/integration/cluster.js';
import { makeBusyboxRootfs } from '../test/e2e/node-agent-harness.js';
import { phase } from '../test/e2e/sandbox-api.js';
import { deleteAll, startBenchStack, stats } from './bench-stack.js';
import { cpuSeconds } from './proc-stats.js';

const WARM_RUNS = Number(process.argv[2] ?? 10);
const COLD_RUNS = Number(process.argv[3] ?? 3);
const GROUP = { group: 'kata.sandbox.io', version: 'v1alpha1', plural: 'katawarmpools' };

const ms = (a: string | undefined, b: string | undefined): number =>
  a && b ? new Date(b).getTime() - new Date(a).getTime() : NaN;
const cond = (sb: KataSandbox, type: string): string | undefined =>
  sb.status?.conditions?.find((c) => c.type === type)?.lastTransitionTime;
const median = (xs: readonly number[]): number => {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

const spec = (rootfs: string, memoryMiB: number) => ({
  vm: { memoryMiB },
  terminationGracePeriodSeconds: 1,
  containers: [
    {
      name: 'main',
      rootfs: { hostPath: { path: rootfs } },
      command: ['/bin/sh', '-c', "trap 'exit 0' TERM; echo up; while true; do sleep 1; done"],
    },
  ],
});

/** The QEMU pids of the node's warm VMs, from the node agent's warm records. */
function warmVmPids(stateDir: string): number[] {
  const dir = path.join(stateDir, 'warm');
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .flatMap((f) => {
        const r = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as {
          qemu?: { info?: { pid?: number } };
        };
        return r.qemu?.info?.pid ? [r.qemu.info.pid] : [];
      });
  } catch {
    return [];
  }
}

/** The QEMU pid of a sandbox from the node agent's state file. */
function qemuPid(stateDir: string, uid: string): number | undefined {
  try {
    const s = JSON.parse(
      readFileSync(path.join(stateDir, 'sandboxes', uid, 'state.json'), 'utf8'),
    ) as { qemu?: { info?: { pid?: number } } };
    return s.qemu?.info?.pid;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const stack = await startBenchStack('warm', () => ['--memory-mib', '8192']);
  const { api, port } = stack;
  const pools = (await adminKubeConfig()).makeApiClient(CustomObjectsApi);
  const poolName = `bench-warm-${process.pid}`;
  const stateDir = path.join(stack.base, 'state');
  stack.onTeardown(() =>
    pools.deleteClusterCustomObject({ ...GROUP, name: poolName }).catch(() => undefined),
  );
  try {
    const rootfs = path.join(stack.roots, 'busybox');
    makeBusyboxRootfs(rootfs);
    await pools.createClusterCustomObject({
      ...GROUP,
      body: {
        apiVersion: 'kata.sandbox.io/v1alpha1',
        kind: 'KataWarmPool',
        metadata: { name: poolName },
        spec: { vm: { memoryMiB: 512 }, replicasPerNode: 1 },
      },
    });
    const readyVms = async (): Promise<number> => {
      const p = (await pools.getClusterCustomObject({ ...GROUP, name: poolName })) as KataWarmPool;
      return (p.status?.nodes ?? []).reduce((n, e) => n + (e.ready ?? 0), 0);
    };

    const run = async (name: string, memoryMiB: number, warm: boolean) => {
      if (warm) {
        const deadline = Date.now() + 600_000;
        while ((await readyVms()) < 1) {
          if (Date.now() > deadline) throw new Error('no warm VM became ready in 10 min');
          await sleep(500);
        }
        // The pool entry can lead the VM by a beat: let the node agent settle.
        await sleep(1_000);
      }
      const before = await rpcSums(port);
      // With one warm VM per node, the one ready now is the one the sandbox takes.
      const warmPid = warm ? warmVmPids(stateDir)[0] : undefined;
      const cpuBefore = warmPid === undefined ? 0 : cpuSeconds(warmPid);
      const t0 = new Date().toISOString();
      const created = await api.create(name, spec(rootfs, memoryMiB));
      const sb = (await api.waitFor(name, 'Running', phase('Running'), 600_000))!;
      const after = await rpcSums(port);
      const pid = qemuPid(stateDir, created.metadata.uid!);
      const vm = sb.status!.vm!;
      const r = {
        total: ms(t0, cond(sb, 'Ready')),
        schedule: ms(t0, cond(sb, 'Scheduled')),
        claim: warm ? (vm.claimMillis ?? NaN) : NaN,
        boot: warm ? NaN : (vm.bootMillis ?? NaN),
        agent: delta(after, before, /CreateSandbox|UpdateInterface|UpdateRoutes|List/),
        container: delta(after, before, /CreateContainer|StartContainer/),
        // Warm: only what the VM spent from the create on; cold: all of it (the boot included).
        qemuCpu: pid === undefined ? NaN : cpuSeconds(pid) - cpuBefore,
        warm: vm.warm === true,
      };
      await deleteAll(api, [name]);
      return r;
    };

    const results: Record<'warm' | 'cold', Awaited<ReturnType<typeof run>>[]> = {
      warm: [],
      cold: [],
    };
    for (let i = 0; i < WARM_RUNS; i++) {
      const r = await run(`warm-${i}`, 512, true);
      if (!r.warm) throw new Error(`warm-${i} did not take a warm VM`);
      results.warm.push(r);
      console.log(`warm ${i + 1}/${WARM_RUNS}: create → Running ${(r.total / 1000).toFixed(2)} s`);
    }
    // Cold: a shape no pool keeps; the pool's idle VM stays (as in a real cluster).
    for (let i = 0; i < COLD_RUNS; i++) {
      const r = await run(`cold-${i}`, 576, false);
      results.cold.push(r);
      console.log(`cold ${i + 1}/${COLD_RUNS}: create → Running ${(r.total / 1000).toFixed(2)} s`);
    }
    const rows: [string, (r: (typeof results.warm)[number]) => number][] = [
      ['create → Running (Ready)', (r) => r.total],
      ['  schedule (create → Scheduled)', (r) => r.schedule],
      ['  claim (share, network, drives)', (r) => r.claim],
      ['  boot (QEMU start → agent answers)', (r) => r.boot],
      ['  agent calls (CreateSandbox, network)', (r) => r.agent],
      ['  container start (Create+StartContainer)', (r) => r.container],
    ];
    for (const kind of ['warm', 'cold'] as const) {
      console.log(`\n${kind}: ${results[kind].length} runs (ms: median, min, max)`);
      for (const [label, f] of rows) {
        const xs = results[kind].map(f);
        if (xs.every((x) => !Number.isFinite(x))) continue;
        console.log(`${label.padEnd(44)} ${stats(xs)}`);
      }
    }
    const load = loadavg()[0]!;
    const warmCpu = median(results.warm.map((r) => r.qemuCpu));
    const coldCpu = median(results.cold.map((r) => r.qemuCpu));
    console.log(
      `\nQEMU CPU-seconds of the sandbox's VM from create to Running (median): warm ${warmCpu.toFixed(2)}, cold ${coldCpu.toFixed(2)} (its boot included)`,
    );
    const result = {
      warm_create_running_median_s: median(results.warm.map((r) => r.total)) / 1000,
      cold_create_running_median_s: median(results.cold.map((r) => r.total)) / 1000,
      warm_claim_median_ms: median(results.warm.map((r) => r.claim)),
      warm_container_start_median_ms: median(results.warm.map((r) => r.container)),
      warm_agent_calls_median_ms: median(results.warm.map((r) => r.agent)),
      cold_boot_median_ms: median(results.cold.map((r) => r.boot)),
      qemu_cpu_s_warm_median: warmCpu,
      qemu_cpu_s_cold_median: coldCpu,
      warm_runs: results.warm.length,
      cold_runs: results.cold.length,
      load,
    };
    console.log(`bench-result ${JSON.stringify(result)}`);
  } finally {
    await stack.teardown();
  }
}

await main();
process.exit(0);

// Create → Running of a KataSandbox on the real stack (local control plane, controller and node
// agent as processes with their ServiceAccount identities, QEMU under whatever accelerator works):
//  1. one sandbox at a time, RUNS times: the time split into schedule (create → Scheduled), host
//     preparation (Scheduled → QEMU started), boot (QEMU start → agent answers), agent calls
//     (CreateSandbox and the network calls, from the node agent's RPC histogram) and container
//     start (CreateContainer + StartContainer); median, min, max of each;
//  2. BATCH sandboxes created at once: time until all are Running, and the node agent's peak RSS.
// Usage: node sandbox-create.mjs [RUNS=5] [BATCH=10]   (run from the repository root)
import { loadavg } from 'node:os';
import path from 'node:path';
import type { KataSandbox } from '../src/crds/index.js';
import { makeBusyboxRootfs } from '../test/e2e/node-agent-harness.js';
import { phase } from '../test/e2e/sandbox-api.js';
import { deleteAll, rpcDeltaMs, rpcSums, startBenchStack, stats } from './bench-stack.js';
import { peakRssMiB } from './proc-stats.js';

const RUNS = Number(process.argv[2] ?? 5);
const BATCH = Number(process.argv[3] ?? 10);

const ms = (a: string | undefined, b: string | undefined): number =>
  a && b ? new Date(b).getTime() - new Date(a).getTime() : NaN;
const cond = (sb: KataSandbox, type: string): string | undefined =>
  sb.status?.conditions?.find((c) => c.type === type)?.lastTransitionTime;

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
  const stack = await startBenchStack('create');
  const { api, agent, port } = stack;
  try {
    const rootfs = path.join(stack.roots, 'busybox');
    makeBusyboxRootfs(rootfs);

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
        rpcDeltaMs(
          after,
          before,
          /CreateSandbox|UpdateInterface|UpdateRoutes|ListInterfaces|ListRoutes/,
        ),
      );
      parts['container']!.push(rpcDeltaMs(after, before, /CreateContainer|StartContainer/));
      console.log(
        `run ${i + 1}/${RUNS}: create → Running ${(parts['total']!.at(-1)! / 1000).toFixed(2)} s`,
      );
      await deleteAll(api, [`one-${i}`]);
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
    await deleteAll(api, names);
    console.log(
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    await stack.teardown();
  }
}

await main();
process.exit(0);

// Benchmark: the agent's own work per call, with no VM. The guest agent's gRPC server and port
// path (bench/agent-rpc-guest.ts) run in a child node process; the host's client (AgentConnection:
// grpc-js, the serial bridge, yamux) runs here and makes sequential Health.Check calls over a
// unix socket standing in for QEMU's chardev and the guest's kata-port-relay. Under TCG the guest
// pays each instruction ~30-40 times over, and its wall time follows the host's load, so what a
// change to the per-call path saves is measured here, as CPU time of each side per call:
//   node agent-rpc.mjs <guest bundle> [calls=4000] [rounds=3]
//   AGENT_RPC_NODE_FLAGS="--cpu-prof --cpu-prof-dir=DIR"  node flags for the guest side
// Prints a line per round (after 300 warm-up calls) and ends with one line `bench-result {json}`
// holding the best round's figures: guest_cpu_us_per_call, host_cpu_us_per_call, wall_us_per_call,
// load.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AgentConnection } from '../src/agent/agent-connection.js';
import { cpuSeconds, loadAverage } from './proc-stats.js';

const GUEST = process.argv[2];
const CALLS = Number(process.argv[3] ?? 4000);
const ROUNDS = Number(process.argv[4] ?? 3);

interface Round {
  guest_cpu_us_per_call: number;
  host_cpu_us_per_call: number;
  wall_us_per_call: number;
}

async function main(): Promise<void> {
  if (!GUEST) throw new Error('usage: agent-rpc.mjs <agent-rpc-guest.mjs> [calls] [rounds]');
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-agent-rpc-'));
  const flags = (process.env.AGENT_RPC_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const guest = spawn(process.execPath, [...flags, GUEST, dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const rounds: Round[] = [];
  try {
    const ready = once(guest.stdout, 'data');
    const failed = once(guest, 'exit').then(([code]) => {
      throw new Error(`the guest side exited (status ${String(code)}) before it was ready`);
    });
    await Promise.race([ready, failed]);
    const conn = await AgentConnection.open({
      agentChannelSocket: path.join(dir, 'channel.sock'),
      grpcSocket: path.join(dir, 'host.sock'),
    });
    try {
      const c = conn.client;
      for (let k = 0; k < 300; k++) await c.check({ timeoutMs: 10_000 });
      for (let r = 0; r < ROUNDS; r++) {
        const g0 = cpuSeconds(guest.pid!);
        const h0 = process.cpuUsage();
        const t0 = performance.now();
        for (let k = 0; k < CALLS; k++) await c.check({ timeoutMs: 10_000 });
        const wall = performance.now() - t0;
        const h = process.cpuUsage(h0);
        const round: Round = {
          guest_cpu_us_per_call: ((cpuSeconds(guest.pid!) - g0) * 1e6) / CALLS,
          host_cpu_us_per_call: (h.user + h.system) / CALLS,
          wall_us_per_call: (wall * 1000) / CALLS,
        };
        rounds.push(round);
        console.log(
          `round ${r + 1}: Health.Check x${CALLS}: guest side CPU ${round.guest_cpu_us_per_call.toFixed(0)} us/call, ` +
            `host side CPU ${round.host_cpu_us_per_call.toFixed(0)} us/call, wall ${round.wall_us_per_call.toFixed(0)} us/call; ` +
            `load ${loadAverage().toFixed(2)}`,
        );
      }
    } finally {
      await conn.close();
    }
  } finally {
    if (guest.exitCode === null && guest.signalCode === null) {
      const exited = once(guest, 'exit');
      guest.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
  // The best round: the one least disturbed by the rest of the machine.
  const best = rounds.reduce((a, b) => (b.guest_cpu_us_per_call < a.guest_cpu_us_per_call ? b : a));
  const r1 = (n: number): number => Math.round(n);
  console.log(
    `bench-result ${JSON.stringify({
      calls: CALLS,
      rounds: ROUNDS,
      guest_cpu_us_per_call: r1(best.guest_cpu_us_per_call),
      host_cpu_us_per_call: r1(best.host_cpu_us_per_call),
      wall_us_per_call: r1(best.wall_us_per_call),
      load: loadAverage(),
    })}`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

// Benchmark: agent RPC round trip (sequential Health.Check) on one VM running our guest agent,
// first from the unmodified Kata 1.x client (grpc-go 1.11 + hashicorp/yamux, test/peers/
// kata1-client, built by hand: test/peers/peer-binaries.ts), then from ours (grpc-js + our yamux, SerialBridge +
// AgentClient) on the same chardev, so the two figures come from the same guest in one run; then
// ours against the real Kata 1.x agent (a second VM, the variant guest image whose PID 1 is
// kata-agent: test/peers/kata1-agent-image.ts).
//   node peers-rpc.mjs [checks=500]
// Prints each client's mean (and ours' p50/p99), and the QEMU CPU seconds each phase used.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, homedir, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { AgentConnection } from '../src/agent/agent-connection.js';
import { bootVm } from '../src/node-agent/hypervisor/boot.js';
import type { VmConfig } from '../src/node-agent/hypervisor/qemu-args.js';
import { kata1GuestImage } from '../test/peers/kata1-agent-image.js';
import { kata1Agent, kata1Client } from '../test/peers/peer-binaries.js';
import { cpuSeconds } from './proc-stats.js';

const CHECKS = Number(process.argv[2] ?? 500);
const REPO = process.cwd();
const IMAGE = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'),
  'kata-sandbox-operator/guest/current',
);
const READY = /kata-guest-agent[^\n]*\bready\b|serving the agent port/;

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

/** `n` sequential checks after 20 warm-up ones; the round trips in ms. */
async function checks(conn: AgentConnection, n: number): Promise<number[]> {
  const rtts: number[] = [];
  for (let k = 0; k < 20; k++) await conn.client.check({ timeoutMs: 30_000, waitForReady: true });
  for (let k = 0; k < n; k++) {
    const t0 = performance.now();
    await conn.client.check({ timeoutMs: 30_000 });
    rtts.push(performance.now() - t0);
  }
  return rtts;
}

/** The host's 1-minute load average as the phase ends (other VMs on the machine skew every figure). */
function load(): string {
  return `load ${(loadavg()[0] ?? NaN).toFixed(2)}`;
}

function summary(rtts: number[]): string {
  const r = [...rtts].sort((x, y) => x - y);
  const mean = rtts.reduce((a, b) => a + b, 0) / rtts.length;
  return `mean ${mean.toFixed(2)} ms, p50 ${quantile(r, 0.5).toFixed(2)} ms, p99 ${quantile(r, 0.99).toFixed(2)} ms`;
}

function vmIn(dir: string, name: string, image: string): VmConfig {
  const vmlinux = path.join(image, 'vmlinux');
  return {
    name,
    machine: 'pc',
    accelerator: 'tcg',
    vcpus: 1,
    memoryMiB: 512,
    kernel: existsSync(vmlinux) ? vmlinux : path.join(image, 'vmlinuz'),
    initrd: path.join(image, 'initrd'),
    console: { logFile: path.join(dir, 'console.log') },
    qmpSocket: path.join(dir, 'qmp.sock'),
    agentChannelSocket: path.join(dir, 'agent-channel.sock'),
    pidFile: path.join(dir, 'qemu.pid'),
  };
}

/** Our client against the real Kata 1.x agent, in a VM of the variant image. */
async function againstKata1Agent(): Promise<void> {
  const agent = kata1Agent();
  if (!('path' in agent)) {
    console.log(`our client -> Kata 1.x agent: skipped: ${agent.missing}`);
    return;
  }
  const image = kata1GuestImage(agent.path, REPO);
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-peers-rpc-kata1-'));
  const vm = vmIn(dir, 'bench-peers-rpc-kata1', image);
  const grpcSocket = path.join(dir, 'agent.sock');
  const res = await bootVm({
    vm,
    waitFor: { kind: 'agent', grpcSocket, checkTimeoutMs: 5_000 },
    deadlineMs: 300_000,
    stderrLog: path.join(dir, 'qemu.log'),
  });
  const conn = res.agent as AgentConnection;
  try {
    const cpu0 = cpuSeconds(res.process.pid);
    const rtts = await checks(conn, CHECKS);
    const cpu1 = cpuSeconds(res.process.pid);
    console.log(
      `Health.Check x${CHECKS}, our client (grpc-js + our yamux) -> Kata 1.x agent (grpc-go 1.11 + hashicorp/yamux): ` +
        `${summary(rtts)}; QEMU CPU ${(cpu1 - cpu0).toFixed(2)} s (20 warm-up calls included); ${load()}`,
    );
  } finally {
    await conn.close();
    await res.process.stop({ powerdownGraceMs: 0, quitGraceMs: 5_000 });
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const client = kata1Client();
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-peers-rpc-'));
  const vm = vmIn(dir, 'bench-peers-rpc', IMAGE);
  console.log(
    `peer RPC bench: tcg, 1 vCPU; host ${cpus().length} cores, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const res = await bootVm({
    vm,
    waitFor: { kind: 'console', pattern: READY },
    deadlineMs: 300_000,
    stderrLog: path.join(dir, 'qemu.log'),
  });
  const pid = res.process.pid;
  try {
    const cpu0 = cpuSeconds(pid);
    if ('path' in client) {
      const out = execFileSync(
        client.path,
        ['-sock', vm.agentChannelSocket as string, '-bench', String(CHECKS), '-bench-only'],
        { encoding: 'utf8', timeout: 600_000 },
      );
      const line = out.split('\n').find((l) => l.includes('"CheckRoundTrip"'));
      const kata1 = line
        ? (JSON.parse(line) as { code: number; result: { meanMs: number } })
        : undefined;
      if (!kata1 || kata1.code !== 0) throw new Error(`kata1-client: ${out}`);
      console.log(
        `Health.Check x${CHECKS}, Kata 1.x client (grpc-go 1.11 + hashicorp/yamux) -> our guest: ` +
          `mean ${kata1.result.meanMs.toFixed(2)} ms; QEMU CPU ${(cpuSeconds(pid) - cpu0).toFixed(2)} s; ${load()}`,
      );
    } else {
      console.log(`Kata 1.x client -> our guest: skipped: ${client.missing}`);
    }
    const cpu1 = cpuSeconds(pid);

    const conn = await AgentConnection.open({
      agentChannelSocket: vm.agentChannelSocket as string,
      grpcSocket: path.join(dir, 'agent.sock'),
    });
    let rtts: number[];
    try {
      rtts = await checks(conn, CHECKS);
    } finally {
      await conn.close();
    }
    const cpu2 = cpuSeconds(pid);
    console.log(
      `Health.Check x${CHECKS}, our client (grpc-js + our yamux) -> our guest: ${summary(rtts)}; ` +
        `QEMU CPU ${(cpu2 - cpu1).toFixed(2)} s (20 warm-up calls included); ${load()}`,
    );
  } finally {
    await res.process.stop({ powerdownGraceMs: 0, quitGraceMs: 5_000 });
    rmSync(dir, { recursive: true, force: true });
  }
  await againstKata1Agent();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

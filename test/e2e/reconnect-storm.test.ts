// Reconnect storm against a real guest (QEMU, TCG here): 100 hosts in a row, each a fresh serial
// bridge and gRPC client on the same agent chardev, with random gaps of 0 to 250 ms between one
// host leaving and the next arriving (0 ms included; the seed is logged, RECONNECT_STORM_SEED
// replays it). Every host's first RPC must work, and every answer must be the one to that host's
// own request: each host leaves a call unanswered as it goes, whose answer the guest writes after
// the host has gone, so the next host meets stale bytes at its start.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient } from '../../src/agent/agent-client.js';
import { SerialBridge } from '../../src/agent/transport/serial-bridge.js';
import { processCpuSeconds } from '../../src/node-agent/metrics/process-usage.js';
import { bootTestVm, ensureImage, vmConfig, type TestVm } from './sandbox-vm.js';

// The environment overrides are for measuring (e.g. 10 hosts with no gap), not for make test.
const HOSTS = Number(process.env.RECONNECT_STORM_HOSTS ?? 100);
const MAX_GAP_MS = Number(process.env.RECONNECT_STORM_MAX_GAP_MS ?? 250);
const CALL = { timeoutMs: Number(process.env.RECONNECT_STORM_CALL_MS ?? 15_000) };
const T = 600_000;

/** mulberry32: a small seeded PRNG, so a failing storm can be replayed gap for gap. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Gaps in ms: one in five exactly 0, the rest spread over 0..MAX_GAP_MS. */
function gaps(seed: number, n: number): number[] {
  const rnd = seededRandom(seed);
  return Array.from({ length: n }, () => (rnd() < 0.2 ? 0 : Math.floor(rnd() * (MAX_GAP_MS + 1))));
}

let dir: string;
let vm: TestVm | undefined;
let chardev: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'reconnect-storm-'));
  const config = vmConfig(dir, 'reconnect-storm', ensureImage());
  chardev = config.agentChannelSocket as string;
  vm = await bootTestVm(config, dir);
  // The boot's own bridge is host 0; the storm starts by taking it away.
  await vm.agent.close();
}, T);

afterAll(async () => {
  await vm?.process.stop({ powerdownGraceMs: 0, quitGraceMs: 3_000, qmpTimeoutMs: 2_000 });
  rmSync(dir, { recursive: true, force: true });
}, T);

interface Host {
  bridge: SerialBridge;
  client: AgentClient;
  /** The host's first RPCs: undefined when they all did what they should, else what went wrong. */
  firstRpcs: Promise<string | undefined>;
}

/** A host arrives: a fresh bridge and client, its first RPCs under way at once. */
async function arrive(i: number): Promise<Host> {
  const grpcSocket = path.join(dir, `host-${i}.sock`);
  const bridge = await SerialBridge.start({ chardevPath: chardev, listenPath: grpcSocket });
  // Every attempt counts: the client retries what is safe to repeat, which would hide a failure.
  const attempts: string[] = [];
  const client = new AgentClient({
    socketPath: grpcSocket,
    onCall: (rpc, code) => attempts.push(`${rpc}:${GrpcStatus[code]}`),
  });
  return { bridge, client, firstRpcs: firstRpcs(i, client, attempts) };
}

const EXPECTED_ATTEMPTS = ['Check:OK', 'ListInterfaces:OK', 'WaitProcess:NOT_FOUND'];

async function firstRpcs(
  i: number,
  client: AgentClient,
  attempts: string[],
): Promise<string | undefined> {
  try {
    if (!(await client.check(CALL))) return 'Check answered NOT_SERVING';
    const ifaces = await client.listInterfaces(CALL);
    if (!ifaces.some((f) => f.name === 'lo')) {
      return `ListInterfaces without lo: ${JSON.stringify(ifaces.map((f) => f.name))}`;
    }
    // An answer that names what this host asked for: another host's answer would name another id.
    const own = `storm-${i}`;
    const err = await client.waitProcess(own, 'none', CALL).then(
      () => new Error('WaitProcess of a container that does not exist succeeded'),
      (e: unknown) => e as Error,
    );
    if (!err.message.includes(`"${own}"`)) return `WaitProcess(${own}) answered: ${err.message}`;
    if (attempts.join() !== EXPECTED_ATTEMPTS.join()) return `attempts ${attempts.join(', ')}`;
    return undefined;
  } catch (e) {
    return `${(e as Error).message} (attempts ${attempts.join(', ')})`;
  }
}

/** The host goes, leaving a call in flight: the guest answers a host that is gone. */
async function leave(host: Host, i: number): Promise<void> {
  host.client.waitProcess(`storm-${i}-unanswered`, 'none', CALL).catch(() => {});
  await sleep(0);
  host.client.close();
  await host.bridge.close();
}

describe('reconnect storm', () => {
  it(
    `${HOSTS} hosts in a row, gaps 0..${MAX_GAP_MS} ms: every first RPC works, every answer is the host's own`,
    async () => {
      const seed = Number(process.env.RECONNECT_STORM_SEED ?? Math.floor(Math.random() * 2 ** 31));
      const pauses = gaps(seed, HOSTS);
      const pid = (vm as TestVm).process.pid;
      const cpuBefore = processCpuSeconds(pid) ?? 0;
      const started = performance.now();
      const failures: string[] = [];
      let host = await arrive(0);
      for (let i = 0; i < HOSTS; i++) {
        const failure = await host.firstRpcs;
        if (failure) failures.push(`host ${i} (after a ${pauses[i - 1] ?? 0} ms gap): ${failure}`);
        if (i === HOSTS - 1) {
          await leave(host, i);
          break;
        }
        const gap = pauses[i] as number;
        let next: Host;
        if (gap === 0) {
          // 0 ms: the next host is already connecting (QEMU holds it until this one has gone),
          // so its bytes are there the moment this one's disconnect is.
          next = await arrive(i + 1);
          await leave(host, i);
        } else {
          await leave(host, i);
          await sleep(gap);
          next = await arrive(i + 1);
        }
        host = next;
      }
      const seconds = (performance.now() - started) / 1000;
      // What the guest saw: hosts gone (EOF), sessions cut in the frames, protocol errors.
      const guestLog = readFileSync(path.join(dir, 'console.log'), 'utf8');
      const count = (re: RegExp) => (guestLog.match(re) ?? []).length;
      const cpu = (processCpuSeconds(pid) ?? cpuBefore) - cpuBefore;
      const zeroGaps = pauses.slice(0, -1).filter((g) => g === 0).length;
      process.stdout.write(
        `reconnect storm: seed ${seed}, ${HOSTS - failures.length}/${HOSTS} first RPCs ok, ` +
          `${zeroGaps} gaps of 0 ms, ${seconds.toFixed(1)} s wall, ` +
          `QEMU ${cpu.toFixed(1)} CPU-seconds; guest log: ${count(/host went away/g)} hosts gone, ` +
          `${count(/session cut in the frames/g)} sessions cut in the frames, ` +
          `${count(/yamux protocol error/g)} yamux protocol errors\n` +
          failures.map((f) => `  ${f}\n`).join(''),
      );
      expect(failures).toEqual([]);
      // The port is driven by the event loop (pollable-port.ts): a write queued for a host that
      // left dies with that host's fd instead of reaching the next one.
      expect(guestLog).toMatch(/"kind":"event-loop".*"msg":"agent port I\/O"/);
    },
    T,
  );
});

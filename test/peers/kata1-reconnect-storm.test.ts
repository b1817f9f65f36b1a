// Reconnect storm with the unmodified Kata 1.x client (test/peers/kata1-client -storm-gaps, built
// by hand: peer-binaries.ts) against our guest agent in a real VM (QEMU, TCG here): 100 hosts in
// a row, each a fresh client.NewAgentClient (unix connection, hashicorp yamux session, grpc-go
// 1.11) on the agent chardev, with seeded random gaps of 0 to 250 ms between one host leaving and
// the next arriving (one in five exactly 0; the seed is logged, RECONNECT_STORM_SEED replays it).
// Unlike our own host (test/e2e/reconnect-storm.test.ts), a 1.x host sends nothing that marks its
// session's start: its SYN for stream 1 is all the guest has. Every host's first RPCs must work
// with no silent redial, and every answer must be to that host's own request: each host leaves a
// call in flight as it goes, whose answer the guest writes for a host that is gone.
// KEEP_SCRATCH=1 keeps the VM's directory (its console log) for a look after a failure.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { bootVm } from '../../src/node-agent/hypervisor/boot.js';
import type { VmConfig } from '../../src/node-agent/hypervisor/qemu-args.js';
import type { QemuProcess } from '../../src/node-agent/hypervisor/qemu-process.js';
import { processCpuSeconds } from '../../src/node-agent/metrics/process-usage.js';
import { reconnectGaps } from '../e2e/reconnect-gaps.js';
import { ensureImage, vmConfig } from '../e2e/sandbox-vm.js';
import { kata1Client } from './peer-binaries.js';

const CLIENT = kata1Client();
const RUNS = 'path' in CLIENT;

// The environment overrides are for measuring, not for make test.
const HOSTS = Number(process.env.RECONNECT_STORM_HOSTS ?? 100);
const MAX_GAP_MS = Number(process.env.RECONNECT_STORM_MAX_GAP_MS ?? 250);
const READY = /kata-guest-agent[^\n]*\bready\b|serving the agent port/;
const T = 25 * 60_000;

interface Line {
  step: string;
  code: number;
  message?: string;
  result?: Record<string, unknown>;
}

let scratch: string;
let vm: VmConfig;
let qemu: QemuProcess | undefined;

beforeAll(async () => {
  if (!RUNS) return;
  scratch = mkdtempSync(path.join(tmpdir(), 'peers-kata1-storm-'));
  vm = vmConfig(scratch, 'peers-kata1-storm', ensureImage());
  const res = await bootVm({
    vm,
    waitFor: { kind: 'console', pattern: READY },
    deadlineMs: 180_000,
    stderrLog: path.join(scratch, 'qemu.log'),
  });
  qemu = res.process;
}, T);

afterAll(async () => {
  await qemu?.stop({ powerdownGraceMs: 0, quitGraceMs: 3_000, qmpTimeoutMs: 2_000 });
  if (scratch && !process.env.KEEP_SCRATCH) rmSync(scratch, { recursive: true, force: true });
}, 60_000);

(RUNS ? describe : describe.skip)(
  'reconnect storm of the Kata 1.x client against our guest agent' +
    (RUNS ? '' : ` — skipped: ${(CLIENT as { missing: string }).missing}`),
  () => {
    it(
      `${HOSTS} 1.x hosts in a row, gaps 0..${MAX_GAP_MS} ms: every first RPC works, every answer is the host's own`,
      async () => {
        const seed = Number(
          process.env.RECONNECT_STORM_SEED ?? Math.floor(Math.random() * 2 ** 31),
        );
        const gaps = reconnectGaps(seed, HOSTS - 1, MAX_GAP_MS);
        const pid = (qemu as QemuProcess).pid;
        const cpuBefore = processCpuSeconds(pid) ?? 0;
        const run = await promisify(execFile)(
          (CLIENT as { path: string }).path,
          [
            '-sock',
            vm.agentChannelSocket as string,
            '-storm-gaps',
            gaps.join(','),
            '-timeout',
            '20m',
          ],
          { timeout: T - 60_000, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 },
        ).catch((err: { stdout?: string; stderr?: string }) => ({
          stdout: err.stdout ?? '',
          stderr: err.stderr ?? String(err),
        }));
        const lines = run.stdout
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as Line);
        const hosts = lines.filter((l) => l.step === 'StormHost');
        const summary = lines.find((l) => l.step === 'Storm');
        const failures = hosts
          .filter((h) => h.code !== 0)
          .map(
            (h) =>
              `host ${String(h.result?.['host'])} (after a ${String(h.result?.['gapBeforeMs'])} ms gap): ${h.message}`,
          );
        // What the guest saw: hosts gone (EOF), sessions cut in the frames, protocol errors.
        const guestLog = readFileSync(path.join(scratch, 'console.log'), 'utf8');
        const count = (re: RegExp) => (guestLog.match(re) ?? []).length;
        const cpu = (processCpuSeconds(pid) ?? cpuBefore) - cpuBefore;
        const seconds = Number(summary?.result?.['seconds'] ?? NaN);
        process.stdout.write(
          `Kata 1.x reconnect storm: seed ${seed}, ${hosts.length - failures.length}/${HOSTS} first RPCs ok, ` +
            `${gaps.filter((g) => g === 0).length} gaps of 0 ms, ${seconds.toFixed(1)} s wall, ` +
            `QEMU ${cpu.toFixed(1)} CPU-seconds; guest log: ${count(/host went away/g)} hosts gone, ` +
            `${count(/session cut in the frames/g)} sessions cut in the frames, ` +
            `${count(/yamux protocol error/g)} yamux protocol errors; ` +
            `grpc-go warnings: ${JSON.stringify(summary?.result?.['grpcWarnings'] ?? [])}\n` +
            failures.map((f) => `  ${f}\n`).join('') +
            (summary ? '' : `kata1-client stderr:\n${run.stderr}\n`),
        );
        expect(summary).toBeDefined();
        expect(hosts.map((h) => h.result?.['host'])).toEqual(
          Array.from({ length: HOSTS }, (_, i) => i),
        );
        expect(failures).toEqual([]);
      },
      T,
    );
  },
);

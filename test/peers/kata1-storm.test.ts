// The reconnect storm with the unmodified Kata 1.x client as every host (test/peers/kata1-client
// -storm-gaps, storm.go): 100 hosts in a row on one VM's agent channel, each a fresh
// client.NewAgentClient, with seeded random gaps of 0 to 250 ms (one in five exactly 0; the seed is
// logged, KATA1_STORM_SEED replays it). Each host leaves a call in flight as it goes; every host's
// first RPCs must work, with no silent redial, and answer that host's own requests. A 1.x host
// has no barrier against bytes the guest wrote for an earlier host: the guest alone must keep
// them from it (kata-port-relay, docs/architecture.md "Reconnects").
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bootVm } from '../../src/node-agent/hypervisor/boot.js';
import type { VmConfig } from '../../src/node-agent/hypervisor/qemu-args.js';
import type { QemuProcess } from '../../src/node-agent/hypervisor/qemu-process.js';
import { reconnectGaps } from '../e2e/reconnect-gaps.js';
import { ensureImage, vmConfig } from '../e2e/sandbox-vm.js';
import { runKata1Client, type Kata1Step as Line } from './kata1-client-run.js';
import { kata1Client } from './peer-binaries.js';

const CLIENT = kata1Client();
const RUNS = 'path' in CLIENT;
const HOSTS = 100;
const MAX_GAP_MS = 250;
const SEED = Number(process.env.KATA1_STORM_SEED ?? Math.floor(Math.random() * 2 ** 31));

let scratch: string;
let vm: VmConfig;
let qemu: QemuProcess | undefined;
let lines: Line[] = [];
let stderrOfRun = '';
let consoleLog = '';

beforeAll(async () => {
  if (!('path' in CLIENT)) return;
  scratch = mkdtempSync(path.join(tmpdir(), 'peers-kata1-storm-'));
  const vmDir = path.join(scratch, 'vm');
  mkdirSync(path.join(vmDir, 'shared'), { recursive: true });
  vm = vmConfig(vmDir, 'peers-kata1-storm', ensureImage(), {
    sharedDir: path.join(vmDir, 'shared'),
  });
  const res = await bootVm({
    vm,
    waitFor: { kind: 'console', pattern: /serving the agent port/ },
    deadlineMs: 180_000,
    stderrLog: path.join(vmDir, 'qemu.log'),
  });
  qemu = res.process;
  const gaps = reconnectGaps(SEED, HOSTS - 1, MAX_GAP_MS);
  const run = await runKata1Client(
    (CLIENT as { path: string }).path,
    [
      '-sock',
      vm.agentChannelSocket as string,
      '-storm-gaps',
      gaps.join(','),
      '-call-timeout',
      '15s',
      '-timeout',
      '20m',
    ],
    25 * 60_000,
  );
  stderrOfRun = run.stderr;
  lines = run.steps;
  consoleLog = readFileSync(vm.console?.logFile as string, 'utf8');
  const count = (re: RegExp): number => consoleLog.match(re)?.length ?? 0;
  const failed = lines.filter((l) => l.step === 'StormHost' && l.code !== 0).length;
  console.log(
    `1.x reconnect storm: seed ${SEED}, ${HOSTS - failed}/${HOSTS} first RPCs ok, ` +
      `${gaps.filter((g) => g === 0).length} gaps of 0 ms; guest log: ` +
      `${count(/kata-port-relay: host session ended/g)} host sessions ended by the relay ` +
      `(${count(/\(write with no host connected\)/g)} on a write with no host, ` +
      `${count(/\(SYN for stream 1 of a new host\)/g)} at a new host's SYN), ` +
      `${count(/mux session cut in the frames/g)} cut in the agent's demux`,
  );
}, 30 * 60_000);

afterAll(async () => {
  await qemu?.stop({ powerdownGraceMs: 0, quitGraceMs: 3_000, qmpTimeoutMs: 2_000 });
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 60_000);

(RUNS ? describe : describe.skip)(
  'reconnect storm with the Kata 1.x client as each host' +
    (RUNS ? '' : ` — skipped: ${(CLIENT as { missing: string }).missing}`),
  () => {
    it('the guest drives its port through kata-port-relay (the image default)', () => {
      expect(consoleLog).toMatch(
        /"relay":"\/usr\/bin\/kata-port-relay"[^\n]*serving the agent port/,
      );
    });

    it(`every one of ${HOSTS} hosts gets its first RPCs answered (gaps 0-${MAX_GAP_MS} ms)`, () => {
      const summary = lines.find((l) => l.step === 'Storm');
      if (!summary) throw new Error(`kata1-client printed no Storm line; stderr:\n${stderrOfRun}`);
      const hosts = lines.filter((l) => l.step === 'StormHost');
      expect(hosts).toHaveLength(HOSTS);
      // The failures themselves (host, gap before it, what went wrong), so a red run says which.
      expect(hosts.filter((h) => h.code !== 0)).toEqual([]);
      expect(summary.result?.['failures']).toBe(0);
    });
  },
);

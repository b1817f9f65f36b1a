// Our guest agent, in a real QEMU VM, driven by the unmodified Kata 1.x agent client
// (test/peers/kata1-client, built by hand: peer-binaries.ts): gRPC over yamux on the
// agent's serial port, with the requests the 1.x runtime sends (the 9p share's options joined in
// one entry, an ephemeral shm storage) and the 1.x shim's end of output (a read that fails).
// The Go program prints one JSON line per step; each is asserted here. The VM is the program's
// only host: booted to the agent's ready line on the console, no serial bridge of ours.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bootVm } from '../../src/node-agent/hypervisor/boot.js';
import type { VmConfig } from '../../src/node-agent/hypervisor/qemu-args.js';
import type { QemuProcess } from '../../src/node-agent/hypervisor/qemu-process.js';
import { busyboxRootfs, ensureImage, vmConfig } from '../e2e/sandbox-vm.js';
import { runKata1Client, type Kata1Step as Step } from './kata1-client-run.js';
import { kata1Client } from './peer-binaries.js';

const CLIENT = kata1Client();
const RUNS = 'path' in CLIENT;

const READY = /kata-guest-agent[^\n]*\bready\b|serving the agent port/;
const CID = 'kata1-ctr';
// gRPC codes (google.golang.org/grpc/codes)
const OK = 0;
const UNKNOWN = 2;
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const FAILED_PRECONDITION = 9;

let scratch: string;
let vm: VmConfig;
let qemu: QemuProcess | undefined;
let steps: Map<string, Step>;
let stderrOfRun = '';

function step(name: string): Step {
  const s = steps.get(name);
  if (!s) throw new Error(`kata1-client printed no step ${name}; stderr:\n${stderrOfRun}`);
  return s;
}

beforeAll(async () => {
  if (!('path' in CLIENT)) return;
  const bin = CLIENT.path;
  const image = ensureImage();
  scratch = mkdtempSync(path.join(tmpdir(), 'peers-kata1-client-'));
  const vmDir = path.join(scratch, 'vm');
  const shared = path.join(vmDir, 'shared');
  // The containers' rootfs at <share>/<cid>/rootfs, where the 1.x runtime puts it (copies: no
  // host mounts to undo).
  for (const cid of [CID, `${CID}-long`]) {
    busyboxRootfs(path.join(shared, cid, 'rootfs'));
    mkdirSync(path.join(shared, cid, 'rootfs', 'dev', 'shm'), { recursive: true });
  }
  vm = vmConfig(vmDir, 'peers-kata1-client', image, { sharedDir: shared });
  const res = await bootVm({
    vm,
    waitFor: { kind: 'console', pattern: READY },
    deadlineMs: 180_000,
    stderrLog: path.join(vmDir, 'qemu.log'),
  });
  qemu = res.process;
  console.log(`guest booted to its ready line in ${res.bootMillis} ms`);

  const run = await runKata1Client(
    bin,
    [
      '-sock',
      vm.agentChannelSocket as string,
      '-cid',
      CID,
      '-script',
      'echo hello-from-kata1; echo to-stderr >&2; exit 7',
    ],
    5 * 60_000,
  );
  stderrOfRun = run.stderr;
  steps = new Map(run.steps.map((s) => [s.step, s]));
  console.log(run.stdout);
}, 25 * 60_000);

afterAll(async () => {
  await qemu?.stop({ powerdownGraceMs: 0, quitGraceMs: 3_000, qmpTimeoutMs: 2_000 });
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 60_000);

(RUNS ? describe : describe.skip)(
  'our guest agent driven by the Kata 1.x client (gRPC over yamux on the serial port)' +
    (RUNS ? '' : ` — skipped: ${(CLIENT as { missing: string }).missing}`),
  () => {
    it('dials with the 1.x authority (unix:///…) and answers Health.Check and Version', () => {
      expect(step('Dial').code).toBe(OK);
      expect(step('Check')).toMatchObject({ code: OK, result: { status: 1 } });
      expect(step('Version').code).toBe(OK);
      expect(step('Version').result?.['agent_version']).toEqual(expect.any(String));
    });

    it('CreateSandbox as the 1.x runtime sends it: comma-joined 9p options, an ephemeral shm', () => {
      expect(step('CreateSandbox')).toMatchObject({ code: OK });
    });

    it('runs a container: its output, then the end of each stream as 1.x ends it, then its exact exit code', () => {
      expect(step('CreateContainer').code).toBe(OK);
      expect(step('StartContainer').code).toBe(OK);
      // The 1.x agent ends a stream with the read's error: gRPC Unknown, "EOF".
      expect(step('ReadStdout')).toMatchObject({
        code: UNKNOWN,
        message: 'EOF',
        result: { data: 'hello-from-kata1\n' },
      });
      expect(step('ReadStderr')).toMatchObject({
        code: UNKNOWN,
        message: 'EOF',
        result: { data: 'to-stderr\n' },
      });
      expect(step('WaitProcess')).toMatchObject({ code: OK, result: { status: 7 } });
    });

    it('execs in a running container whose /dev/shm is the sandbox tmpfs, then signals its init', () => {
      expect(step('CreateContainer(long)').code).toBe(OK);
      expect(step('StartContainer(long)').code).toBe(OK);
      expect(step('ExecProcess').code).toBe(OK);
      const exec = step('ReadStdout(exec)');
      expect(exec).toMatchObject({ code: UNKNOWN, message: 'EOF' });
      const out = String(exec.result?.['data']);
      // The sandbox's ephemeral storage (source "shm", 67108864 bytes), bound in by the spec.
      expect(out).toMatch(/^shm \/dev\/shm tmpfs \S*size=65536k/m);
      expect(out).toContain('exec-out\n');
      expect(step('WaitProcess(exec)')).toMatchObject({ code: OK, result: { status: 3 } });
      expect(step('SignalProcess').code).toBe(OK);
      expect(step('WaitProcess(signalled)')).toMatchObject({ code: OK, result: { status: 42 } });
    });

    it('ListProcesses: the pids as JSON, ps output cut to them, other formats refused', () => {
      const json = step('ListProcesses(json)');
      expect(json.code).toBe(OK);
      const pids = JSON.parse(String(json.result?.['list'])) as number[];
      expect(pids.length).toBeGreaterThan(0);
      const table = step('ListProcesses(table)');
      expect(table.code).toBe(OK);
      const lines = String(table.result?.['list']).trim().split('\n');
      expect(lines[0]).toMatch(/^\s*PID\s+COMMAND/);
      expect(lines.slice(1).some((l) => /\bsh$/.test(l.trim()))).toBe(true);
      expect(step('ListProcesses(yaml)').code).toBe(INVALID_ARGUMENT);
    });

    it('PauseContainer / ResumeContainer / UpdateContainer on a running container; pausing an exited one is refused', () => {
      expect(step('PauseContainer').code).toBe(OK);
      expect(step('ResumeContainer').code).toBe(OK);
      expect(step('PauseContainer(exited)').code).toBe(FAILED_PRECONDITION);
      expect(step('UpdateContainer').code).toBe(OK);
    });

    it('GetOOMEvent names the container whose 128 MiB limit killed a process; MemHotplugByProbe without a probe file is refused', () => {
      // tail, holding a line that never ends, is killed (SIGKILL: 137) under the limit set by UpdateContainer.
      expect(step('OOM(hog)')).toMatchObject({ code: OK, result: { data: 'tail-status 137\n' } });
      expect(step('GetOOMEvent')).toMatchObject({
        code: OK,
        result: { container_id: `${CID}-long` },
      });
      expect(step('MemHotplugByProbe')).toMatchObject({
        code: FAILED_PRECONDITION,
        message: 'this guest kernel has no memory probe file (/sys/devices/system/memory/probe)',
      });
    });

    it('StatsContainer: the limits UpdateContainer set, the CPU the hog burned, the limit it hit; an unknown id is NOT_FOUND', () => {
      const stats = step('StatsContainer');
      expect(stats).toMatchObject({
        code: OK,
        result: { memoryLimit: 128 * 1024 * 1024, pidsLimit: 64 },
      });
      expect(stats.result?.['cpuTotalNs']).toBeGreaterThan(0);
      expect(stats.result?.['memoryUsage']).toBeGreaterThan(0);
      expect(stats.result?.['memoryFailcnt']).toBeGreaterThan(0);
      expect(stats.result?.['pidsCurrent']).toBeGreaterThanOrEqual(1);
      expect(stats.result?.['networks']).toContain('lo');
      expect(step('StatsContainer(unknown)').code).toBe(NOT_FOUND);
    });

    it('CopyFile in two parts lands in the container; a path outside /run/kata-containers/ is refused', () => {
      expect(step('CopyFile(0)').code).toBe(OK);
      expect(step('CopyFile(1)').code).toBe(OK);
      expect(step('CopyFile(read)')).toMatchObject({
        code: OK,
        result: { data: 'copied-by-kata1\n', status: 0 },
      });
      expect(step('CopyFile(outside)').code).toBe(INVALID_ARGUMENT);
    });

    it('AddARPNeighbors, OnlineCPUMem, ReseedRandomDev, SetGuestDateTime', () => {
      expect(step('AddARPNeighbors').code).toBe(OK);
      expect(step('AddARPNeighbors(bad)').code).toBe(INVALID_ARGUMENT);
      expect(step('OnlineCPUMem').code).toBe(OK);
      expect(step('OnlineCPUMem(none)').code).toBe(INVALID_ARGUMENT);
      expect(step('ReseedRandomDev').code).toBe(OK);
      expect(step('SetGuestDateTime').code).toBe(OK);
      const clock = step('SetGuestDateTime(read)');
      expect(clock).toMatchObject({ code: OK, result: { status: 0 } });
      // Set to 1893456000.7 s (rounded to ...001), read back moments later.
      const now = Number(String(clock.result?.['data']).trim());
      expect(now).toBeGreaterThanOrEqual(1893456001);
      expect(now).toBeLessThan(1893456000 + 3600);
    });

    it('removes both containers and destroys the sandbox', () => {
      expect(step('RemoveContainer').code).toBe(OK);
      expect(step('RemoveContainer(long)').code).toBe(OK);
      expect(step('DestroySandbox').code).toBe(OK);
    });
  },
);

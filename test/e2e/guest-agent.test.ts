// Real QEMU (TCG here), the real guest agent, real crun inside the guest: one VM serves every
// check below in order (sandbox, containers with a busybox rootfs on the 9p share, exec, stdin,
// signals, a host-side restart of the serial bridge, refusals, DestroySandbox and stop). The broken
// initrd case lives in qemu-boot.test.ts. Every QEMU started here is killed in afterAll, and every
// host bind mount made here is unmounted, even when a test fails.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { ValidateFunction } from 'ajv';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  copyFileSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { AgentClient } from '../../src/agent/agent-client.js';
import { AgentRpcError } from '../../src/agent/errors.js';
import { toOciConfig } from '../../src/agent/guest/oci-config.js';
import {
  buildContainerSpec,
  type ContainerInput,
} from '../../src/node-agent/oci/container-spec.js';
import { constrainSpec } from '../../src/agent/oci-constraints.js';
import { buildProcess } from '../../src/agent/process-spec.js';
import type { ContainerSetup, SandboxSetup } from '../../src/agent/agent-requests.js';
import { containerGuestDir, GUEST_SHARED_DIR, sharedDirStorage } from '../../src/agent/storage.js';
import { bindIntoShare, teardownShare } from '../../src/node-agent/storage/shared-dir.js';
import { builtHostFsBinary } from '../integration/host-fs-binary.js';
import type { AgentConnection } from '../../src/agent/agent-connection.js';
import { SerialBridge } from '../../src/agent/transport/serial-bridge.js';
import type { StringUser } from '../../src/generated/agent.js';
import type { Process, Spec } from '../../src/generated/oci.js';
import {
  chooseAccelerator,
  kvmBootProbe,
  type AcceleratorChoice,
} from '../../src/node-agent/hypervisor/accelerator.js';
import { bootVm } from '../../src/node-agent/hypervisor/boot.js';
import type { VmConfig } from '../../src/node-agent/hypervisor/qemu-args.js';
import { isSameProcess, type QemuProcess } from '../../src/node-agent/hypervisor/qemu-process.js';
import { processCpuSeconds } from '../../src/node-agent/metrics/process-usage.js';
import { configValidator } from '../unit/guest-agent/oci-schema.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const IMAGE = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'),
  'kata-sandbox-operator/guest/current',
);
const SIGKILL = 9;
const SIGTERM = 15;
const CALL = { timeoutMs: 60_000 };
// Per test: Jest applies testTimeout only from the top-level config, not a project's.
const T = 300_000;
const SANDBOX_ID = 'e2e-sandbox';
const HOSTNAME = 'guest-agent-e2e';

function ensureImage(): { kernel: string; initrd: string } {
  execFileSync('make', ['--no-print-directory', 'guest'], {
    cwd: REPO,
    stdio: ['ignore', 'ignore', 'inherit'],
    timeout: 15 * 60_000,
  });
  const vmlinux = path.join(IMAGE, 'vmlinux');
  return {
    kernel: existsSync(vmlinux) ? vmlinux : path.join(IMAGE, 'vmlinuz'),
    initrd: path.join(IMAGE, 'initrd'),
  };
}

/** A busybox root filesystem: the static binary and one symlink per applet in /bin. */
function makeBusyboxRootfs(dir: string): void {
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(path.join(dir, d));
  copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'));
  execFileSync('chmod', ['0755', path.join(dir, 'bin/busybox')]);
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a !== '' && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', path.join(dir, 'bin', a));
}

let scratch: string;
let vmDir: string;
let vm: VmConfig;
let qemu: QemuProcess | undefined;
let bridge: SerialBridge | undefined;
let client: AgentClient;
let accel: AcceleratorChoice;
let validate: ValidateFunction;
let rootfsTemplate: string;
const hostMounts: string[] = [];
let grpcSocket: string;
const hostFs = () => ({ binary: builtHostFsBinary() });

/**
 * The host's side of a container rootfs: a busybox dir bind-mounted into the 9p share, by the
 * node agent's own share code (which also takes it down at the end).
 */
async function shareRootfs(cid: string): Promise<void> {
  const src = path.join(scratch, 'rootfs', cid);
  mkdirSync(path.dirname(src), { recursive: true });
  execFileSync('cp', ['-a', rootfsTemplate, src]);
  const target = path.join(cid, 'rootfs');
  const shareDir = vm.sharedDir as string;
  hostMounts.push(path.join(shareDir, target));
  await bindIntoShare(hostFs(), shareDir, {
    sourceRoot: scratch,
    source: src,
    target,
    readOnly: false,
  });
}

function expectValidOci(config: unknown): void {
  if (!validate(config)) throw new Error(JSON.stringify(validate.errors, null, 2));
}

function containerSpec(container: ContainerInput): Spec {
  const built = buildContainerSpec({
    container,
    field: `spec.containers[${container.name}]`,
    hostname: HOSTNAME,
    volumeGuestPaths: new Map(),
  });
  const spec = constrainSpec(built.spec);
  // What the guest agent will write as config.json, converted by its own converter.
  expectValidOci(toOciConfig(spec));
  return spec;
}

function createRequest(cid: string, spec: Spec): ContainerSetup {
  return { containerId: cid, oci: spec };
}

async function runContainer(cid: string, command: string[], extra?: (s: Spec) => void) {
  await shareRootfs(cid);
  const spec = containerSpec({ name: cid, command });
  extra?.(spec);
  await client.createContainer(createRequest(cid, spec), CALL);
  await client.startContainer(cid, CALL);
}

function execCommand(args: string[]): { process: Process; stringUser: StringUser } {
  return buildProcess({ args, env: [{ name: 'PATH', value: '/bin' }], cwd: '/' });
}

/** ReadStdout until the empty read that ends the stream. */
async function readAll(cid: string, execId: string, which = 'stdout'): Promise<string> {
  const chunks: Buffer[] = [];
  for (;;) {
    const b =
      which === 'stdout'
        ? await client.readStdout(cid, execId, 64 * 1024, CALL)
        : await client.readStderr(cid, execId, 64 * 1024, CALL);
    if (b.length === 0) return Buffer.concat(chunks).toString('utf8');
    chunks.push(b);
  }
}

/** Both streams to their end, then the exit status. */
async function outcome(
  cid: string,
  execId: string,
): Promise<{ stdout: string; stderr: string; status: number }> {
  const [stdout, stderr] = await Promise.all([
    readAll(cid, execId, 'stdout'),
    readAll(cid, execId, 'stderr'),
  ]);
  return { stdout, stderr, status: await client.waitProcess(cid, execId, CALL) };
}

/** ReadStdout until `want` has been seen (the stream stays open). */
async function readUntil(cid: string, execId: string, want: string): Promise<string> {
  let out = '';
  while (!out.includes(want)) {
    const b = await client.readStdout(cid, execId, 64 * 1024, CALL);
    if (b.length === 0) throw new Error(`stdout of ${cid}/${execId} ended before ${want}: ${out}`);
    out += b.toString('utf8');
  }
  return out;
}

async function rpcError(p: Promise<unknown>): Promise<AgentRpcError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AgentRpcError);
  return err as AgentRpcError;
}

async function connectHost(signal?: AbortSignal): Promise<AgentClient> {
  bridge = await SerialBridge.start({
    chardevPath: vm.agentChannelSocket as string,
    listenPath: grpcSocket,
    signal,
  });
  return new AgentClient({ socketPath: grpcSocket });
}

function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes(text)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

beforeAll(async () => {
  const image = ensureImage();
  validate = configValidator();
  scratch = mkdtempSync(path.join(tmpdir(), 'guest-agent-e2e-'));
  rootfsTemplate = path.join(scratch, 'busybox-rootfs');
  mkdirSync(rootfsTemplate);
  makeBusyboxRootfs(rootfsTemplate);
  accel = await chooseAccelerator('auto', kvmBootProbe({ kernel: image.kernel, timeoutMs: 5_000 }));
  vmDir = path.join(scratch, 'vm');
  mkdirSync(path.join(vmDir, 'shared'), { recursive: true });
  grpcSocket = path.join(vmDir, 'agent.sock');
  vm = {
    name: 'e2e-guest-agent',
    machine: 'pc',
    accelerator: accel.accelerator,
    vcpus: 1,
    memoryMiB: 512,
    kernel: image.kernel,
    initrd: image.initrd,
    console: { logFile: path.join(vmDir, 'console.log') },
    qmpSocket: path.join(vmDir, 'qmp.sock'),
    agentChannelSocket: path.join(vmDir, 'agent-channel.sock'),
    sharedDir: path.join(vmDir, 'shared'),
    pidFile: path.join(vmDir, 'qemu.pid'),
  };
  const res = await bootVm({
    vm,
    waitFor: { kind: 'agent', grpcSocket, checkTimeoutMs: 5_000 },
    deadlineMs: 180_000,
    stderrLog: path.join(vmDir, 'qemu.log'),
  });
  qemu = res.process;
  client = (res.agent as AgentConnection).client;
  bridge = (res.agent as AgentConnection).bridge;
  console.log(`boot to Health.Check answered: ${res.bootMillis} ms (${accel.accelerator})`);
}, 20 * 60_000);

afterAll(async () => {
  client?.close();
  await bridge?.close();
  await qemu?.stop({ powerdownGraceMs: 0, quitGraceMs: 500, qmpTimeoutMs: 500 });
  if (vm?.sharedDir) await teardownShare(hostFs(), vm.sharedDir, hostMounts).catch(() => undefined);
  if (scratch && mountsUnder(scratch).length === 0) {
    rmSync(scratch, { recursive: true, force: true });
  }
}, 60_000);

describe('guest agent in a real VM', () => {
  it(
    'Health.Check and Version answer over serial + yamux',
    async () => {
      await expect(client.check(CALL)).resolves.toBe(true);
      const v = await client.version(CALL);
      expect(v.agentVersion).not.toBe('');
    },
    T,
  );

  it(
    'refuses a storage mount point of ../../etc with INVALID_ARGUMENT (sandbox and container)',
    async () => {
      const bad = { ...sharedDirStorage(), mountPoint: '../../etc' };
      const req: SandboxSetup = {
        sandboxId: SANDBOX_ID,
        hostname: HOSTNAME,
        dns: { nameservers: [], searches: [] },
        storages: [bad],
      };
      const e1 = await rpcError(client.createSandbox(req, CALL));
      expect(e1.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(e1.details).toContain('mount_point');
      expect(e1.details).toContain('../../etc');

      const spec = containerSpec({ name: 'refused', command: ['true'] });
      const creq = { ...createRequest('refused', spec), storages: [bad] };
      const e2 = await rpcError(client.createContainer(creq, CALL));
      expect(e2.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(e2.details).toContain('mount_point');
      // Nothing was created: the id is free.
      const e3 = await rpcError(client.waitProcess('refused', '', CALL));
      expect(e3.code).toBe(GrpcStatus.NOT_FOUND);
    },
    T,
  );

  it(
    'CreateSandbox mounts the 9p share: a file written on the host is read in the guest',
    async () => {
      const marker = `from the host ${randomBytes(8).toString('hex')}\n`;
      writeFileSync(path.join(vm.sharedDir as string, 'host-marker.txt'), marker);
      const req: SandboxSetup = {
        sandboxId: SANDBOX_ID,
        hostname: HOSTNAME,
        dns: { nameservers: ['10.0.0.10'], searches: ['svc.cluster.local'] },
        storages: [sharedDirStorage()],
      };
      await client.createSandbox(req, CALL);
      // A container that sees the guest's mount of the share at /share reads the host's file.
      await runContainer('share-reader', ['cat', '/share/host-marker.txt'], (s) => {
        s.Mounts.push({
          destination: '/share',
          type: 'bind',
          source: GUEST_SHARED_DIR,
          options: ['rbind', 'ro'],
        });
      });
      expect(await outcome('share-reader', 'share-reader')).toEqual({
        stdout: marker,
        stderr: '',
        status: 0,
      });
      await client.removeContainer('share-reader', 10, CALL);
    },
    T,
  );

  it(
    'a busybox container runs `echo hello`: stdout "hello\\n", exit 0',
    async () => {
      await runContainer('hello', ['echo', 'hello']);
      expect(await outcome('hello', 'hello')).toEqual({ stdout: 'hello\n', stderr: '', status: 0 });
      await client.removeContainer('hello', 10, CALL);
    },
    T,
  );

  it(
    'a container that exits 3: WaitProcess says 3',
    async () => {
      await runContainer('exit3', ['sh', '-c', 'echo bye >&2; exit 3']);
      expect(await outcome('exit3', 'exit3')).toEqual({ stdout: '', stderr: 'bye\n', status: 3 });
      await client.removeContainer('exit3', 10, CALL);
    },
    T,
  );

  it(
    "StatsContainer: a container that burned CPU shows it in its cgroup, with memory, pids and the guest's lo",
    async () => {
      // Two seconds of a busy loop, a connection refused on loopback (packets on lo), then idle.
      await runContainer('burner', [
        'sh',
        '-c',
        'timeout 2 sh -c "while :; do :; done"; nc -w 2 127.0.0.1 9 </dev/null; ' +
          'echo burned; exec sleep 1000',
      ]);
      await readUntil('burner', 'burner', 'burned');
      const res = await client.statsContainer('burner', CALL);
      const cg = res.cgroupStats;
      expect(cg?.cpuStats?.cpuUsage?.totalUsage).toBeGreaterThan(0);
      expect(cg?.cpuStats?.cpuUsage?.usageInUsermode).toBeGreaterThan(0);
      expect(cg?.memoryStats?.usage?.usage).toBeGreaterThan(0);
      expect(cg?.memoryStats?.usage?.limit).toBeGreaterThan(0);
      expect(Object.keys(cg?.memoryStats?.stats ?? {})).toContain('inactive_file');
      expect(cg?.pidsStats?.current).toBeGreaterThanOrEqual(1);
      const lo = res.networkStats.find((n) => n.name === 'lo');
      expect(lo?.rxPackets).toBeGreaterThan(0);
      expect(lo?.txBytes).toBe(lo?.rxBytes);
      const details = await client.guestDetails(CALL);
      expect(details.guestMemory?.totalBytes).toBeGreaterThan(256 * 1024 * 1024);
      expect(details.guestMemory?.availableBytes).toBeGreaterThan(0);
      expect(details.guestMemory?.availableBytes).toBeLessThanOrEqual(
        details.guestMemory?.totalBytes ?? 0,
      );
      const unknown = await rpcError(client.statsContainer('no-such', CALL));
      expect(unknown.code).toBe(GrpcStatus.NOT_FOUND);

      // The cost of one call, printed (not asserted): wall p50 over 20, QEMU CPU per call, beside
      // Health.Check (the cheapest call) and GetGuestDetails (the sampling's other call).
      const pid = qemu?.pid ?? 0;
      const cost = async (rpc: string, call: () => Promise<unknown>): Promise<void> => {
        const cpu0 = processCpuSeconds(pid) ?? 0;
        const walls: number[] = [];
        for (let i = 0; i < 20; i++) {
          const t0 = process.hrtime.bigint();
          await call();
          walls.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        const qemuCpu = ((processCpuSeconds(pid) ?? 0) - cpu0) / 20;
        walls.sort((x, y) => x - y);
        console.log(
          `${rpc} (${accel.accelerator}): wall p50 ${walls[10]?.toFixed(1)} ms, ` +
            `p90 ${walls[18]?.toFixed(1)} ms; QEMU CPU ${(qemuCpu * 1000).toFixed(1)} ms per call`,
        );
      };
      await cost('StatsContainer', () => client.statsContainer('burner', CALL));
      await cost('GetGuestDetails', () => client.guestDetails(CALL));
      await cost('Health.Check', () => client.check(CALL));
      const burned = (cg?.cpuStats?.cpuUsage?.totalUsage ?? 0) / 1e9;
      console.log(`burner's cgroup CPU after its 2 s loop: ${burned.toFixed(2)} s`);
      await client.removeContainer('burner', 10, CALL);
    },
    T,
  );

  it(
    'exec into a running container: output comes back, the written config.json is valid OCI',
    async () => {
      // The sleeper sees its own bundle at /bundle, so the config.json the guest agent wrote can be
      // read back and checked against the schema.
      // Its first output shows the init really runs (the exec-right-after-start case is the
      // "leftover" container below).
      await runContainer('sleeper', ['sh', '-c', 'echo up; exec sleep 1000'], (s) => {
        s.Mounts.push({
          destination: '/bundle',
          type: 'bind',
          source: '/run/kata-containers/sleeper',
          options: ['rbind', 'ro'],
        });
      });
      await readUntil('sleeper', 'sleeper', 'up');
      const { process: p, stringUser } = execCommand(['cat', '/bundle/config.json']);
      const execId = await client.execProcess('sleeper', p, stringUser, CALL);
      const res = await outcome('sleeper', execId);
      expect({ stderr: res.stderr, status: res.status }).toEqual({ stderr: '', status: 0 });
      const text = res.stdout;
      const config = JSON.parse(text) as { root: { path: string }; process: { args: string[] } };
      expectValidOci(config);
      expect(config.root.path).toBe(`${containerGuestDir('sleeper')}/rootfs`);
      expect(config.process.args).toEqual(['sh', '-c', 'echo up; exec sleep 1000']);

      const echo = execCommand(['sh', '-c', 'echo "from exec in $(hostname)"']);
      const id2 = await client.execProcess('sleeper', echo.process, echo.stringUser, CALL);
      expect(await readAll('sleeper', id2)).toBe(`from exec in ${HOSTNAME}\n`);
      await expect(client.waitProcess('sleeper', id2, CALL)).resolves.toBe(0);
    },
    T,
  );

  it(
    'stdin round-trips through `cat` (WriteStdin, CloseStdin, ReadStdout until empty)',
    async () => {
      const { process: p, stringUser } = execCommand(['cat']);
      const execId = await client.execProcess('sleeper', p, stringUser, CALL);
      const payload = Buffer.from('ping\nline two\n'.repeat(100));
      let written = 0;
      while (written < payload.length) {
        written += await client.writeStdin('sleeper', execId, payload.subarray(written), CALL);
      }
      await client.closeStdin('sleeper', execId, CALL);
      expect(await readAll('sleeper', execId)).toBe(payload.toString());
      await expect(client.waitProcess('sleeper', execId, CALL)).resolves.toBe(0);
    },
    T,
  );

  it(
    'SignalProcess(SIGKILL) ends an exec`d `sleep 1000`: 137',
    async () => {
      const { process: p, stringUser } = execCommand(['sleep', '1000']);
      const execId = await client.execProcess('sleeper', p, stringUser, CALL);
      await client.signalProcess('sleeper', execId, SIGKILL, CALL);
      await expect(client.waitProcess('sleeper', execId, CALL)).resolves.toBe(137);
    },
    T,
  );

  it(
    'SIGTERM to a shell that traps TERM and exits 42: 42',
    async () => {
      await runContainer('trap', [
        'sh',
        '-c',
        'trap "exit 42" TERM; echo armed; while :; do sleep 1; done',
      ]);
      // PID 1 ignores signals it has no handler for: signal only once the trap is set.
      await readUntil('trap', 'trap', 'armed');
      await client.signalProcess('trap', 'trap', SIGTERM, CALL);
      await expect(client.waitProcess('trap', 'trap', CALL)).resolves.toBe(42);
      await client.removeContainer('trap', 10, CALL);
    },
    T,
  );

  it(
    'a restarted host side (new bridge on the same chardev) talks to the same guest again',
    async () => {
      client.close();
      await bridge?.close();
      expect(existsSync(grpcSocket)).toBe(false);
      client = await connectHost();
      await expect(client.check(CALL)).resolves.toBe(true);
      // The guest kept its state: the sleeper still runs and takes execs.
      const echo = execCommand(['echo', 'still here']);
      const execId = await client.execProcess('sleeper', echo.process, echo.stringUser, CALL);
      expect(await readAll('sleeper', execId)).toBe('still here\n');
      await expect(client.waitProcess('sleeper', execId, CALL)).resolves.toBe(0);
    },
    T,
  );

  it(
    'exec with a terminal: TtyWinResize 40x120 is what `stty size` sees; exit 7; one output stream',
    async () => {
      const { process: p, stringUser } = buildProcess({
        args: ['sh'],
        env: [{ name: 'PATH', value: '/bin' }],
        cwd: '/',
        terminal: true,
      });
      const execId = await client.execProcess('sleeper', p, stringUser, CALL);
      await client.ttyWinResize('sleeper', execId, 40, 120, CALL);
      // A terminal has one output: stderr ends at once, as Kata's agent reads a terminal once.
      expect(await readAll('sleeper', execId, 'stderr')).toBe('');
      await client.writeStdin('sleeper', execId, Buffer.from('stty size; tty; exit 7\n'), CALL);
      const out = await readAll('sleeper', execId);
      expect(out).toContain('40 120\r\n');
      expect(out).toMatch(/\/dev\/pts\/[0-9]+\r\n/);
      await expect(client.waitProcess('sleeper', execId, CALL)).resolves.toBe(7);
      // The terminal went with its process.
      const gone = await rpcError(client.ttyWinResize('sleeper', execId, 24, 80, CALL));
      expect(gone.code).toBe(GrpcStatus.FAILED_PRECONDITION);
      // A process without a terminal has no size to set.
      const plain = execCommand(['sleep', '1000']);
      const plainId = await client.execProcess('sleeper', plain.process, plain.stringUser, CALL);
      const noTty = await rpcError(client.ttyWinResize('sleeper', plainId, 24, 80, CALL));
      expect(noTty.code).toBe(GrpcStatus.FAILED_PRECONDITION);
      await client.signalProcess('sleeper', plainId, SIGKILL, CALL);
      await expect(client.waitProcess('sleeper', plainId, CALL)).resolves.toBe(137);
    },
    T,
  );

  it(
    'prints what a terminal costs: an exec of `true` with and without one (wall, QEMU CPU)',
    async () => {
      const pid = qemu?.pid ?? 0;
      const N = 10;
      for (const terminal of [false, true]) {
        const { process: p, stringUser } = buildProcess({
          args: ['true'],
          env: [{ name: 'PATH', value: '/bin' }],
          cwd: '/',
          terminal,
        });
        const cpu0 = processCpuSeconds(pid) ?? 0;
        const walls: number[] = [];
        for (let i = 0; i < N; i++) {
          const t0 = process.hrtime.bigint();
          const execId = await client.execProcess('sleeper', p, stringUser, CALL);
          await readAll('sleeper', execId);
          expect(await client.waitProcess('sleeper', execId, CALL)).toBe(0);
          walls.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        const qemuCpu = ((processCpuSeconds(pid) ?? 0) - cpu0) / N;
        walls.sort((x, y) => x - y);
        console.log(
          `exec of true ${terminal ? 'with' : 'without'} a terminal (${accel.accelerator}): ` +
            `wall p50 ${walls[N / 2]?.toFixed(0)} ms, max ${walls[N - 1]?.toFixed(0)} ms; ` +
            `QEMU CPU ${(qemuCpu * 1000).toFixed(0)} ms per exec`,
        );
      }
    },
    T,
  );

  it(
    'CloseStdin on a terminal exec is its end of file: `cat` ends with 0',
    async () => {
      const { process: p, stringUser } = buildProcess({
        args: ['cat'],
        env: [{ name: 'PATH', value: '/bin' }],
        cwd: '/',
        terminal: true,
      });
      const execId = await client.execProcess('sleeper', p, stringUser, CALL);
      await client.writeStdin('sleeper', execId, Buffer.from('over the terminal\n'), CALL);
      // The terminal echoes the line, then cat writes it back.
      await readUntil('sleeper', execId, 'over the terminal\r\nover the terminal\r\n');
      await client.closeStdin('sleeper', execId, CALL);
      await expect(client.waitProcess('sleeper', execId, CALL)).resolves.toBe(0);
      await readAll('sleeper', execId);
    },
    T,
  );

  it(
    'a container with tty: true runs on a terminal: `tty` names /dev/pts, output in one stream',
    async () => {
      await shareRootfs('term');
      const spec = containerSpec({
        name: 'term',
        command: ['sh', '-c', 'tty; echo hi; echo err >&2'],
        tty: true,
      });
      await client.createContainer(createRequest('term', spec), CALL);
      await client.startContainer('term', CALL);
      const res = await outcome('term', 'term');
      expect(res).toEqual({ stdout: expect.any(String), stderr: '', status: 0 });
      expect(res.stdout).toMatch(/^\/dev\/pts\/[0-9]+\r\nhi\r\nerr\r\n$/);
      await client.removeContainer('term', 10, CALL);
    },
    T,
  );

  it(
    'SignalProcess(SIGKILL) ends a container whose init is `sleep 1000`: 137',
    async () => {
      await client.signalProcess('sleeper', 'sleeper', SIGKILL, CALL);
      await expect(client.waitProcess('sleeper', 'sleeper', CALL)).resolves.toBe(137);
    },
    T,
  );

  it(
    'DestroySandbox then stop: QEMU exits, its sockets are gone, no process left, the share tears down',
    async () => {
      // A container still running when the sandbox goes away is taken down with it.
      await runContainer('leftover', ['sleep', '1000']);
      // An exec right after StartContainer finds the container started.
      const echo = execCommand(['echo', 'ok']);
      const execId = await client.execProcess('leftover', echo.process, echo.stringUser, CALL);
      expect(await outcome('leftover', execId)).toEqual({ stdout: 'ok\n', stderr: '', status: 0 });
      await client.destroySandbox(CALL);
      const e = await rpcError(client.waitProcess('leftover', 'leftover', { timeoutMs: 10_000 }));
      expect(e.code).toBe(GrpcStatus.NOT_FOUND);

      const proc = qemu as QemuProcess;
      client.close();
      await bridge?.close();
      const stopped = await proc.stop({ powerdownGraceMs: 5_000, quitGraceMs: 5_000 });
      expect(['powerdown', 'quit']).toContain(stopped);
      await proc.exited;
      expect(isSameProcess(proc.pid, proc.info.startTime)).toBe(false);
      expect(existsSync(`/proc/${proc.pid}`)).toBe(false);
      for (const f of [vm.qmpSocket, vm.agentChannelSocket as string, grpcSocket, vm.pidFile]) {
        expect(existsSync(f as string)).toBe(false);
      }
      expect(processesMentioning(vmDir)).toEqual([]);
      // The host's bind mounts into the share are the host's to undo, once the VM is gone: the
      // node agent's teardown takes every one down and removes the share.
      await teardownShare(hostFs(), vm.sharedDir as string, hostMounts.splice(0));
      expect(mountsUnder(scratch)).toEqual([]);
      expect(existsSync(vm.sharedDir as string)).toBe(false);
    },
    T,
  );
});

// Real QEMU (TCG here): boots the guest image built by `make guest` from its read-only erofs root
// drive (as the node agent boots the default kernel), waits for the agent's ready line on the
// console, talks QMP, stops the VM and checks nothing is left; a broken initrd fails
// within the deadline with the console tail in the error. Every QEMU started here is killed in
// afterAll, even when a test fails.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import {
  chooseAccelerator,
  kvmBootProbe,
  type AcceleratorChoice,
} from '../../src/node-agent/hypervisor/accelerator.js';
import { BootError, bootVm } from '../../src/node-agent/hypervisor/boot.js';
import type { RootDiskConfig, VmConfig } from '../../src/node-agent/hypervisor/qemu-args.js';
import {
  QemuProcess,
  isSameProcess,
  readProcStat,
} from '../../src/node-agent/hypervisor/qemu-process.js';
import { QmpClient } from '../../src/node-agent/hypervisor/qmp-client.js';
import { hostTscKhz } from '../../src/node-agent/hypervisor/host-tsc.js';
import { sandboxVmConfig } from '../../src/node-agent/hypervisor/sandbox-vm.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const IMAGE = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'),
  'kata-sandbox-operator/guest/current',
);
// The placeholder agent says "kata-guest-agent … ready"; the real one logs "serving the agent port".
const READY = /kata-guest-agent[^\n]*\bready\b|serving the agent port/;

interface Image {
  kernel: string;
  initrd: string;
  rootDisk: RootDiskConfig;
}

function ensureImage(): Image {
  const initrd = path.join(IMAGE, 'initrd');
  // Idempotent and cached by an input hash: quick when the image matches the sources.
  execFileSync('make', ['--no-print-directory', 'guest'], {
    cwd: REPO,
    stdio: ['ignore', 'ignore', 'inherit'],
    timeout: 15 * 60_000,
  });
  // vmlinux boots through its PVH entry with no decompression: ~8 s faster under TCG than the
  // xz-compressed vmlinuz, which is the fallback.
  const vmlinux = path.join(IMAGE, 'vmlinux');
  const rootDisk = { path: path.join(IMAGE, 'rootfs.erofs'), fsType: 'erofs' as const };
  if (!existsSync(rootDisk.path)) throw new Error(`${rootDisk.path} is missing: make guest`);
  return { kernel: existsSync(vmlinux) ? vmlinux : path.join(IMAGE, 'vmlinuz'), initrd, rootDisk };
}

const started: QemuProcess[] = [];
let scratch: string;
let image: Image;
let accel: AcceleratorChoice;

function vmConfig(dir: string, name: string, overrides: Partial<VmConfig> = {}): VmConfig {
  return {
    name,
    machine: 'pc',
    accelerator: accel.accelerator,
    vcpus: 1,
    memoryMiB: 512,
    kernel: image.kernel,
    rootDisk: image.rootDisk,
    console: { logFile: path.join(dir, 'console.log') },
    qmpSocket: path.join(dir, 'qmp.sock'),
    agentChannelSocket: path.join(dir, 'agent-channel.sock'),
    sharedDir: path.join(dir, 'shared'),
    pidFile: path.join(dir, 'qemu.pid'),
    ...overrides,
  };
}

function vmDir(name: string): string {
  const dir = path.join(scratch, name);
  execFileSync('mkdir', ['-p', path.join(dir, 'shared')]);
  return dir;
}

beforeAll(async () => {
  image = ensureImage();
  scratch = mkdtempSync(path.join(tmpdir(), 'qemu-boot-e2e-'));
  accel = await chooseAccelerator('auto', kvmBootProbe({ kernel: image.kernel, timeoutMs: 5_000 }));
  console.log(`accelerator: ${accel.accelerator} — ${accel.reason}`);
}, 20 * 60_000);

afterAll(async () => {
  // Kill whatever is still running, even after a failed assertion.
  await Promise.all(
    started.map((p) => p.stop({ powerdownGraceMs: 0, quitGraceMs: 500, qmpTimeoutMs: 500 })),
  );
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 60_000);

describe('QEMU boot (real VM)', () => {
  it('auto accelerator answers with a reason, and never picks a KVM that cannot boot a kernel', () => {
    expect(accel.reason).not.toBe('');
    if (accel.accelerator === 'kvm') expect(accel.probe?.ok).toBe(true);
  });

  it('boots the guest image: ready line on the console, QMP running, stop leaves nothing', async () => {
    const dir = vmDir('boot');
    const vm = vmConfig(dir, 'e2e-boot');
    const disk = path.join(dir, 'disk, with comma.img');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    vm.drives = [{ path: disk, serialId: 'a'.repeat(64), readOnly: true, cache: 'writeback' }];
    const res = await bootVm({
      vm,
      waitFor: { kind: 'console', pattern: READY },
      deadlineMs: 120_000,
      stderrLog: path.join(dir, 'qemu.log'),
    });
    started.push(res.process);
    console.log(
      `boot to ready line: ${res.bootMillis} ms (${accel.accelerator}, kernel ${path.basename(image.kernel)})`,
    );
    expect(res.bootMillis).toBeGreaterThan(0);
    // Our own agent runs through its loader, with the V8 code cache made at build time: V8 in the
    // guest (another CPU model than the build host's) must accept it, or the start loses its gain.
    const manifest = JSON.parse(readFileSync(path.join(IMAGE, 'manifest.json'), 'utf8')) as {
      agentSource: string;
    };
    const consoleText = readFileSync(vm.console.logFile, 'utf8');
    // The root is the read-only erofs drive, which stayed vda beside the test's own drive.
    expect(consoleText).toMatch(/kata-guest-init: starting kata-guest-agent .*\(root erofs\)/);
    if (manifest.agentSource === 'src/agent/guest/main.ts') {
      expect(/kata-guest-agent-loader: [^\r\n]*/.exec(consoleText)?.[0]).toMatch(
        /code cache accepted/,
      );
    }

    const proc = res.process;
    expect(isSameProcess(proc.pid, proc.info.startTime)).toBe(true);
    expect(readProcStat(proc.pid)?.startTime).toBe(proc.info.startTime);
    expect(existsSync(vm.agentChannelSocket as string)).toBe(true);

    const qmp = await QmpClient.connect(vm.qmpSocket, { timeoutMs: 5_000 });
    try {
      expect(qmp.version?.major).toBeGreaterThanOrEqual(7);
      const st = await qmp.queryStatus({ timeoutMs: 5_000 });
      expect(st).toMatchObject({ status: 'running', running: true });
    } finally {
      qmp.close();
    }

    // A restarted node agent finds the same VM by pid + start time, and stops it.
    const adopted = QemuProcess.adopt(proc.info);
    expect(adopted).toBeDefined();
    const stopT0 = performance.now();
    const outcome = await adopted!.stop({ powerdownGraceMs: 1_000, quitGraceMs: 5_000 });
    console.log(`stop: ${outcome} in ${Math.round(performance.now() - stopT0)} ms`);
    expect(['powerdown', 'quit']).toContain(outcome);
    await proc.exited;
    expect(isSameProcess(proc.pid, proc.info.startTime)).toBe(false);
    expect(existsSync(`/proc/${proc.pid}`)).toBe(false); // reaped, not a zombie
    for (const f of [vm.qmpSocket, vm.agentChannelSocket as string, vm.pidFile as string]) {
      expect(existsSync(f)).toBe(false);
    }
    expect(QemuProcess.adopt(proc.info)).toBeUndefined();
  }, 240_000);

  it('boots and answers Health.Check over the virtio-serial port + yamux', async () => {
    const dir = vmDir('agent');
    const vm = vmConfig(dir, 'e2e-agent');
    const grpcSocket = path.join(dir, 'agent.sock');
    const res = await bootVm({
      vm,
      waitFor: { kind: 'agent', grpcSocket, checkTimeoutMs: 5_000 },
      deadlineMs: 120_000,
      stderrLog: path.join(dir, 'qemu.log'),
    });
    started.push(res.process);
    const client = res.agent?.client;
    try {
      console.log(`boot to Health.Check answered: ${res.bootMillis} ms (${accel.accelerator})`);
      const t0 = performance.now();
      const n = 20;
      for (let i = 0; i < n; i++) {
        await expect(client!.check({ timeoutMs: 5_000 })).resolves.toBe(true);
      }
      console.log(
        `Check round trip over serial+mux: ${((performance.now() - t0) / n).toFixed(1)} ms mean`,
      );
      const v = await client!.version({ timeoutMs: 5_000 });
      expect(v.agentVersion).not.toBe('');
    } finally {
      await res.agent?.close();
    }
    const outcome = await res.process.stop({ powerdownGraceMs: 0, quitGraceMs: 5_000 });
    expect(outcome).toBe('quit');
    for (const f of [vm.qmpSocket, vm.agentChannelSocket as string, grpcSocket]) {
      expect(existsSync(f)).toBe(false);
    }
  }, 240_000);

  // The node agent's --machine-type microvm: the sandbox's VM config as vm-launch.ts makes it.
  // Skipped where /proc/cpuinfo does not give the host's TSC rate: a TCG microvm guest then
  // stalls now and then, so the node agent boots pc instead (machine-type.ts).
  const tscKhz = hostTscKhz();
  // Counted as skipped, saying why, where the node agent itself would boot such a VM on pc.
  (tscKhz !== undefined ? it : it.skip)(
    'microvm: boots to Health.Check over virtio-mmio; a device hot-plug is refused by QEMU' +
      (tscKhz === undefined
        ? ' (skipped: /proc/cpuinfo gives no reliable TSC rate, which microvm needs under TCG)'
        : ''),
    async () => {
      const dir = vmDir('microvm');
      const vm = sandboxVmConfig({
        uid: 'e2e-microvm',
        vm: undefined,
        accelerator: accel.accelerator,
        kernel: image.kernel,
        root: { rootDisk: image.rootDisk },
        runDir: dir,
        shareDir: path.join(dir, 'shared'),
        machine: 'microvm',
        ...(tscKhz !== undefined && { tscKhz }),
      });
      expect(vm.machine).toBe('microvm');
      const res = await bootVm({
        vm,
        waitFor: { kind: 'agent', grpcSocket: path.join(dir, 'agent.sock'), checkTimeoutMs: 5_000 },
        deadlineMs: 120_000,
        stderrLog: path.join(dir, 'qemu.log'),
      });
      started.push(res.process);
      try {
        console.log(`microvm boot to Health.Check answered: ${res.bootMillis} ms`);
        await expect(res.agent!.client.check({ timeoutMs: 5_000 })).resolves.toBe(true);
        const qmp = await QmpClient.connect(vm.qmpSocket, { timeoutMs: 5_000 });
        try {
          // What drive-hotplug.ts does on pc; microvm has no PCI and its virtio-mmio buses
          // take no hot-plug, hence the node agent's NoHotplug warm-pool miss.
          await expect(
            qmp.execute(
              'device_add',
              { driver: 'virtio-net-pci', id: 'hp0' },
              { timeoutMs: 5_000 },
            ),
          ).rejects.toThrow(/No 'PCI' bus/);
          await expect(
            qmp.execute(
              'device_add',
              { driver: 'virtio-net-device', id: 'hp1' },
              { timeoutMs: 5_000 },
            ),
          ).rejects.toThrow(/does not support hotplugging/);
        } finally {
          qmp.close();
        }
      } finally {
        await res.agent?.close();
      }
      expect(await res.process.stop({ powerdownGraceMs: 0, quitGraceMs: 5_000 })).toBe('quit');
    },
    240_000,
  );

  it('a broken initrd fails the boot with the console tail in the error', async () => {
    const dir = vmDir('broken');
    const initrd = path.join(dir, 'broken-initrd');
    writeFileSync(initrd, randomBytes(256 * 1024));
    const brokenRootVm = vmConfig(dir, 'e2e-broken', { initrd });
    delete brokenRootVm.rootDisk;
    const deadlineMs = 60_000;
    const t0 = performance.now();
    const err = await bootVm({
      vm: brokenRootVm,
      waitFor: { kind: 'console', pattern: READY },
      deadlineMs,
      stderrLog: path.join(dir, 'qemu.log'),
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const took = performance.now() - t0;
    console.log(`broken initrd failed after ${Math.round(took)} ms`);
    expect(err).toBeInstanceOf(BootError);
    const be = err as BootError;
    expect(be.consoleTail.length).toBeGreaterThan(0);
    expect(be.consoleTail.length).toBeLessThanOrEqual(20);
    expect(be.message).toContain(be.consoleTail[be.consoleTail.length - 1]);
    expect(be.consoleTail.join('\n')).toMatch(/Kernel panic|VFS|initramfs|unpack/i);
    expect(existsSync(path.join(dir, 'qmp.sock'))).toBe(false);
  }, 240_000);

  it('a root drive that is not an erofs image fails the boot at once, saying why', async () => {
    const dir = vmDir('broken-root');
    const bad = path.join(dir, 'not-erofs.img');
    writeFileSync(bad, randomBytes(4 << 20));
    const err = await bootVm({
      vm: vmConfig(dir, 'e2e-broken-root', { rootDisk: { path: bad, fsType: 'erofs' } }),
      waitFor: { kind: 'console', pattern: READY },
      deadlineMs: 60_000,
      stderrLog: path.join(dir, 'qemu.log'),
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BootError);
    // panic=-1 + -no-reboot: QEMU ends with the kernel's reason, not at the deadline.
    expect((err as BootError).consoleTail.join('\n')).toMatch(
      /VFS: Cannot open root device|unable to mount root/i,
    );
  }, 240_000);
});

import { describe, expect, it, jest } from '@jest/globals';
import {
  chooseAccelerator,
  kvmBootProbe,
  kvmProbeArgs,
  resetAcceleratorCache,
  type KvmProbe,
  type KvmProbeResult,
} from '../../../src/node-agent/hypervisor/accelerator.js';

const probeOf = (result: KvmProbeResult | Error): jest.Mock<KvmProbe> =>
  jest.fn<KvmProbe>(() =>
    result instanceof Error ? Promise.reject(result) : Promise.resolve(result),
  );

describe('chooseAccelerator', () => {
  it('an explicit choice is taken as is, without probing', async () => {
    const probe = probeOf({ ok: false, reason: 'x', millis: 1 });
    await expect(chooseAccelerator('tcg', probe)).resolves.toMatchObject({ accelerator: 'tcg' });
    await expect(chooseAccelerator('kvm', probe)).resolves.toMatchObject({ accelerator: 'kvm' });
    expect(probe).not.toHaveBeenCalled();
  });

  it('auto picks KVM only when the probe proves it, and says why', async () => {
    const good = probeOf({ ok: true, reason: 'kernel banner after 300 ms', millis: 300 });
    const c = await chooseAccelerator('auto', good);
    expect(c.accelerator).toBe('kvm');
    expect(c.reason).toContain('kernel banner');
    expect(c.probe?.ok).toBe(true);

    const bad = probeOf({ ok: false, reason: 'no kernel banner within 5000 ms', millis: 5000 });
    const d = await chooseAccelerator('auto', bad);
    expect(d.accelerator).toBe('tcg');
    expect(d.reason).toMatch(/KVM unusable.*no kernel banner/);
  });

  it('a probe that throws means TCG', async () => {
    const c = await chooseAccelerator('auto', probeOf(new Error('spawn EACCES')));
    expect(c).toMatchObject({ accelerator: 'tcg' });
    expect(c.reason).toContain('spawn EACCES');
  });

  it('probes once per process (concurrent callers share it) until reset', async () => {
    const probe = probeOf({ ok: false, reason: 'hang', millis: 1 });
    await Promise.all([chooseAccelerator('auto', probe), chooseAccelerator('auto', probe)]);
    await chooseAccelerator('auto', probe);
    expect(probe).toHaveBeenCalledTimes(1);
    resetAcceleratorCache(probe);
    await chooseAccelerator('auto', probe);
    expect(probe).toHaveBeenCalledTimes(2);
  });

  it('refuses an unknown request', async () => {
    await expect(chooseAccelerator('hvf' as never, probeOf(new Error()))).rejects.toThrow(
      /unknown/,
    );
  });
});

describe('kvmBootProbe', () => {
  it('boots the kernel under KVM with the CPU model real VMs get', () => {
    const args = kvmProbeArgs('/img/vmlinux');
    expect(args.slice(0, 4)).toEqual(['-accel', 'kvm', '-cpu', 'host']);
    expect(args).toContain('/img/vmlinux');
    expect(args[args.length - 1]).toContain('earlyprintk=serial');
  });

  it('fails without spawning when /dev/kvm is not usable', async () => {
    const r = await kvmBootProbe({ kernel: '/k', devKvm: '/nonexistent/kvm' })();
    expect(r.ok).toBe(false);
    expect(r.reason).toContain('ENOENT');
  });

  it('reports a QEMU binary that cannot start', async () => {
    const r = await kvmBootProbe({
      kernel: '/k',
      devKvm: '/dev/null',
      qemuBinary: '/nonexistent/qemu',
    })();
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/cannot start|exited/);
  });
});

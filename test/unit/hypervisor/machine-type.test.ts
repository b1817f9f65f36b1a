import { describe, expect, it } from '@jest/globals';
import {
  canHotplug,
  chooseMachine,
  hotplugIneligibility,
  machineFor,
} from '../../../src/node-agent/hypervisor/machine-type.js';
import { tscKhzFromCpuinfo } from '../../../src/node-agent/hypervisor/host-tsc.js';
import { sandboxVmConfig } from '../../../src/node-agent/hypervisor/sandbox-vm.js';

describe('machine type abilities', () => {
  it("auto: microvm for a sandbox's own VM, pc for warm-pool VMs; a fixed type for both", () => {
    expect(machineFor('auto', 'sandbox')).toBe('microvm');
    expect(machineFor('auto', 'warm')).toBe('pc');
    for (const m of ['pc', 'q35', 'microvm'] as const) {
      expect(machineFor(m, 'sandbox')).toBe(m);
      expect(machineFor(m, 'warm')).toBe(m);
    }
    // Warm VMs under auto take hot-plugged drives and NICs.
    expect(hotplugIneligibility(machineFor('auto', 'warm'), 3)).toBeUndefined();
  });

  it('only pc hot-plugs drives and NICs the way the node agent does', () => {
    expect(canHotplug('pc')).toBe(true);
    expect(canHotplug('q35')).toBe(false);
    expect(canHotplug('microvm')).toBe(false);
  });

  it('a warm VM on microvm takes only sandboxes that need nothing plugged in', () => {
    expect(hotplugIneligibility('microvm', 0)).toBeUndefined();
    expect(hotplugIneligibility('pc', 3)).toBeUndefined();
    const why = hotplugIneligibility('microvm', 2);
    expect(why).toMatch(/2 block devices and NICs/);
    expect(why).toMatch(/microvm cannot hot-plug/);
    expect(hotplugIneligibility('q35', 1)).toMatch(/q35 cannot hot-plug/);
  });

  it('microvm under TCG without the host TSC rate boots on pc, saying why', () => {
    expect(chooseMachine('microvm', 'tcg', 2_596_144)).toEqual({ machine: 'microvm' });
    expect(chooseMachine('microvm', 'kvm', undefined)).toEqual({ machine: 'microvm' });
    const fb = chooseMachine('microvm', 'tcg', undefined);
    expect(fb.machine).toBe('pc');
    expect(fb.fallback).toMatch(/TSC rate/);
    expect(chooseMachine('q35', 'tcg', undefined)).toEqual({ machine: 'q35' });
  });

  it("a sandbox's VM config follows the node's machine type and passes the TSC rate under TCG only", () => {
    const inputs = {
      uid: 'u1',
      vm: undefined,
      accelerator: 'tcg' as const,
      kernel: '/k',
      root: { initrd: '/i' },
      runDir: '/run/x',
      shareDir: '/share/x',
    };
    expect(sandboxVmConfig(inputs).machine).toBe('pc');
    const mv = sandboxVmConfig({ ...inputs, machine: 'microvm', tscKhz: 2_000_000 });
    expect(mv.machine).toBe('microvm');
    expect(mv.tscKhz).toBe(2_000_000);
    expect(sandboxVmConfig({ ...inputs, machine: 'microvm' }).machine).toBe('pc');
    const kvm = sandboxVmConfig({ ...inputs, accelerator: 'kvm', machine: 'microvm', tscKhz: 1 });
    expect(kvm.machine).toBe('microvm');
    expect(kvm.tscKhz).toBeUndefined();
  });
});

describe('tscKhzFromCpuinfo', () => {
  const cpu = (flags: string, mhz = '2596.144'): string =>
    `processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: ${mhz}\nflags\t\t: fpu tsc ${flags}\n\nprocessor\t: 1\ncpu MHz\t\t: 1.000\nflags\t\t: fpu\n`;

  it("reads cpu MHz of the first CPU when the kernel knew the TSC's rate", () => {
    expect(tscKhzFromCpuinfo(cpu('constant_tsc nonstop_tsc tsc_known_freq'))).toBe(2_596_144);
  });

  it('trusts nothing else: no tsc_known_freq, a measured clock (aperfmperf), junk', () => {
    expect(tscKhzFromCpuinfo(cpu('constant_tsc nonstop_tsc'))).toBeUndefined();
    expect(tscKhzFromCpuinfo(cpu('constant_tsc tsc_known_freq aperfmperf'))).toBeUndefined();
    expect(tscKhzFromCpuinfo(cpu('constant_tsc tsc_known_freq', 'n/a'))).toBeUndefined();
    expect(tscKhzFromCpuinfo('')).toBeUndefined();
  });
});

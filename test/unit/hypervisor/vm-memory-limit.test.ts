import { describe, expect, it } from '@jest/globals';
import { TCG_TRANSLATION_CACHE_MIB } from '../../../src/node-agent/hypervisor/qemu-args.js';
import {
  describeVmMemoryLimit,
  vmMemoryLimit,
} from '../../../src/node-agent/hypervisor/vm-memory-limit.js';

describe('vmMemoryLimit', () => {
  it('TCG adds the translation cache QEMU is given to the guest and QEMU overhead', () => {
    const l = vmMemoryLimit(512, 256, 'tcg', TCG_TRANSLATION_CACHE_MIB);
    expect(l).toEqual({
      guestMiB: 512,
      overheadMiB: 256,
      translationCacheMiB: TCG_TRANSLATION_CACHE_MIB,
      totalMiB: 512 + 256 + TCG_TRANSLATION_CACHE_MIB,
    });
    expect(describeVmMemoryLimit(l)).toBe(
      `${l.totalMiB} MiB (512 MiB guest memory + ${TCG_TRANSLATION_CACHE_MIB} MiB TCG translation ` +
        "cache + 256 MiB QEMU overhead, the node agent's --vm-memory-overhead-mib)",
    );
  });

  it('KVM has no translation cache', () => {
    const l = vmMemoryLimit(1024, 256, 'kvm', TCG_TRANSLATION_CACHE_MIB);
    expect(l.totalMiB).toBe(1280);
    expect(describeVmMemoryLimit(l)).toBe(
      "1280 MiB (1024 MiB guest memory + 256 MiB QEMU overhead, the node agent's --vm-memory-overhead-mib)",
    );
  });
});

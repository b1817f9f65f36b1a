import { describe, expect, it } from '@jest/globals';
import { MIN_MEMORY_MIB } from '../../../src/crds/index.js';
import {
  guestMemoryFloorMiB,
  memoryShortfall,
} from '../../../src/node-agent/hypervisor/guest-memory.js';

const MiB = 1024 * 1024;
// The initrd `make guest` builds today for the stock kernel: 123907584 bytes (119 MiB, uncompressed).
const SHIPPED_INITRD = 123_907_584;

describe('guestMemoryFloorMiB', () => {
  it('from an initrd: grows with it, counting a started MiB as a whole one', () => {
    expect(guestMemoryFloorMiB({ initrdBytes: 100 * MiB })).toBe(100 + 344);
    expect(guestMemoryFloorMiB({ initrdBytes: 100 * MiB + 1 })).toBe(101 + 344);
    expect(guestMemoryFloorMiB({ initrdBytes: 0 })).toBe(344);
  });

  it("from the root drive: above the measured bare boot (64 MiB) and equal to the CRD's minimum", () => {
    const floor = guestMemoryFloorMiB({ rootDisk: true });
    expect(floor).toBe(160);
    expect(floor).toBeGreaterThan(64);
    expect(floor).toBe(MIN_MEMORY_MIB);
  });

  it("the stock kernel's floor is above its measured bare boot (392 MiB with a 116 MiB initrd)", () => {
    expect(guestMemoryFloorMiB({ initrdBytes: 116 * MiB })).toBeGreaterThan(392);
    expect(guestMemoryFloorMiB({ initrdBytes: SHIPPED_INITRD })).toBe(463);
  });
});

describe('memoryShortfall', () => {
  it('says nothing when the memory is enough', () => {
    expect(memoryShortfall(463, { initrdBytes: SHIPPED_INITRD })).toBeUndefined();
    expect(memoryShortfall(160, { rootDisk: true })).toBeUndefined();
  });

  it('names spec.vm.memoryMiB, the need and where it comes from when it is not', () => {
    expect(memoryShortfall(512, { initrdBytes: 300 * MiB })).toBe(
      "spec.vm.memoryMiB: 512 MiB is less than the 644 MiB this node's guest image needs to boot " +
        "(its initrd, unpacked into the VM's memory, is 300 MiB; the kernel and guest agent take " +
        '280 MiB more, the containers 64)',
    );
    expect(memoryShortfall(462, { initrdBytes: SHIPPED_INITRD })).toContain(
      'less than the 463 MiB',
    );
    expect(memoryShortfall(159, { rootDisk: true })).toBe(
      "spec.vm.memoryMiB: 159 MiB is less than the 160 MiB this node's guest image needs to boot " +
        '(from its read-only root drive: the kernel and guest agent take 96 MiB, the containers 64)',
    );
  });
});

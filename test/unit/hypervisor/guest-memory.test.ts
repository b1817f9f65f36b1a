import { describe, expect, it } from '@jest/globals';
import { MIN_MEMORY_MIB } from '../../../src/crds/index.js';
import {
  guestMemoryFloorMiB,
  memoryShortfall,
} from '../../../src/node-agent/hypervisor/guest-memory.js';

const MiB = 1024 * 1024;
// The initrd `make guest` builds today: 121536000 bytes (116 MiB, uncompressed).
const SHIPPED_INITRD = 121_536_000;

describe('guestMemoryFloorMiB', () => {
  it('grows with the initrd, counting a started MiB as a whole one', () => {
    expect(guestMemoryFloorMiB(100 * MiB)).toBe(100 + 344);
    expect(guestMemoryFloorMiB(100 * MiB + 1)).toBe(101 + 344);
    expect(guestMemoryFloorMiB(0)).toBe(344);
  });

  it("is above the measured bare boot of the shipped image (392 MiB) and within the CRD's minimum", () => {
    const floor = guestMemoryFloorMiB(SHIPPED_INITRD);
    expect(floor).toBe(460);
    expect(floor).toBeGreaterThan(392);
    expect(floor).toBeLessThanOrEqual(MIN_MEMORY_MIB);
  });
});

describe('memoryShortfall', () => {
  it('says nothing when the memory is enough', () => {
    expect(memoryShortfall(460, SHIPPED_INITRD)).toBeUndefined();
    expect(memoryShortfall(512, SHIPPED_INITRD)).toBeUndefined();
  });

  it('names spec.vm.memoryMiB, the need and where it comes from when it is not', () => {
    expect(memoryShortfall(512, 300 * MiB)).toBe(
      "spec.vm.memoryMiB: 512 MiB is less than the 644 MiB this node's guest image needs to boot " +
        "(its initrd, unpacked into the VM's memory, is 300 MiB; the kernel and guest agent take " +
        '280 MiB more, the containers 64)',
    );
    expect(memoryShortfall(459, SHIPPED_INITRD)).toContain('less than the 460 MiB');
  });
});

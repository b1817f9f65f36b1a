// The least memory a sandbox VM needs to boot this node's guest image, from the image itself:
// the initrd is unpacked into RAM and stays there as the guest's root filesystem, so the need
// grows with it. The fixed part was measured with bench/guest-min-memory.ts (docs/operations.md,
// "Guest memory"): the image with a 116 MiB initrd boots to its agent answering in 392 MiB, not
// in 384, so the kernel, its reservations and the guest agent's Node.js take about 276 MiB
// besides the initrd; 64 MiB more leaves the containers' processes room. The CRD's minimum
// (MIN_MEMORY_MIB) covers the shipped image; this check covers a bigger image on a node.

const MiB = 1024 * 1024;
/** Kernel, its reservations and the guest agent besides the initrd (measured 276, rounded up). */
export const GUEST_BASE_MIB = 280;
/** Room for the containers' processes (crun, the workload) above a bare boot. */
export const CONTAINER_HEADROOM_MIB = 64;

/** The least memory (MiB) a VM needs to boot an image whose initrd is `initrdBytes` long. */
export function guestMemoryFloorMiB(initrdBytes: number): number {
  return Math.ceil(initrdBytes / MiB) + GUEST_BASE_MIB + CONTAINER_HEADROOM_MIB;
}

/** Why `memoryMiB` is too little for the image, naming the field; undefined when it is enough. */
export function memoryShortfall(memoryMiB: number, initrdBytes: number): string | undefined {
  const floor = guestMemoryFloorMiB(initrdBytes);
  if (memoryMiB >= floor) return undefined;
  const initrdMiB = Math.ceil(initrdBytes / MiB);
  return (
    `spec.vm.memoryMiB: ${memoryMiB} MiB is less than the ${floor} MiB this node's guest image ` +
    `needs to boot (its initrd, unpacked into the VM's memory, is ${initrdMiB} MiB; the kernel ` +
    `and guest agent take ${GUEST_BASE_MIB} MiB more, the containers ${CONTAINER_HEADROOM_MIB})`
  );
}

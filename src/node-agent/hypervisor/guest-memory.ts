// The least memory a sandbox VM needs to boot this node's guest image, from how its kernel finds
// its root. Measured with bench/guest-min-memory.ts (docs/operations.md, "Guest memory"):
// - from an initrd (the stock kernel), the whole tree is unpacked into RAM and stays there, so the
//   need grows with it: with a 116 MiB initrd the agent answered in 392 MiB, not in 384 — the
//   kernel, its reservations, the unpacking and the agent's Node.js about 276 MiB besides it;
// - from the read-only erofs root drive (the default kernel), files are read through the page
//   cache and can be dropped again: the agent answered in 64 MiB as fast as in 512, thrashed at
//   48–52 and did not come up in 44.
// 64 MiB more leaves the containers' processes room. The CRD's minimum (MIN_MEMORY_MIB) is the
// root drive's floor; a `kernel: debian` sandbox below the initrd's floor is refused here.
const MiB = 1024 * 1024;
/** Kernel, its reservations and the guest agent besides the initrd (measured 276, rounded up). */
export const GUEST_BASE_MIB = 280;
/** Kernel and guest agent booted from the root drive (measured 64 without thrashing, + margin). */
export const ROOT_DISK_BASE_MIB = 96;
/** Room for the containers' processes (crun, the workload) above a bare boot. */
export const CONTAINER_HEADROOM_MIB = 64;

/** What the floor depends on: the initrd's size, or booting from the root drive. */
export type GuestRootNeed = { initrdBytes: number } | { rootDisk: true };

/** The least memory (MiB) a VM needs to boot with this root. */
export function guestMemoryFloorMiB(need: GuestRootNeed): number {
  if ('rootDisk' in need) return ROOT_DISK_BASE_MIB + CONTAINER_HEADROOM_MIB;
  return Math.ceil(need.initrdBytes / MiB) + GUEST_BASE_MIB + CONTAINER_HEADROOM_MIB;
}

/** Why `memoryMiB` is too little for the image, naming the field; undefined when it is enough. */
export function memoryShortfall(memoryMiB: number, need: GuestRootNeed): string | undefined {
  const floor = guestMemoryFloorMiB(need);
  if (memoryMiB >= floor) return undefined;
  const head = `spec.vm.memoryMiB: ${memoryMiB} MiB is less than the ${floor} MiB this node's guest image needs to boot`;
  if ('rootDisk' in need) {
    return (
      `${head} (from its read-only root drive: the kernel and guest agent take ` +
      `${ROOT_DISK_BASE_MIB} MiB, the containers ${CONTAINER_HEADROOM_MIB})`
    );
  }
  const initrdMiB = Math.ceil(need.initrdBytes / MiB);
  return (
    `${head} (its initrd, unpacked into the VM's memory, is ${initrdMiB} MiB; the kernel ` +
    `and guest agent take ${GUEST_BASE_MIB} MiB more, the containers ${CONTAINER_HEADROOM_MIB})`
  );
}

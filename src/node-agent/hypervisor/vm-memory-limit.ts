// The memory a VM's cgroup may use: the guest's RAM, QEMU's own, and under TCG the translation
// cache, which QEMU (7.2) sizes at 1 GiB unless told and fills as the guest runs new code — every
// exec'd process adds some — so an unbounded cache walks a long-lived sandbox into the OOM killer
// (measured: a 512 MiB guest's QEMU was killed after ~30 execs under a 768 MiB limit).
import type { Accelerator } from './qemu-args.js';

export interface VmMemoryLimit {
  guestMiB: number;
  overheadMiB: number;
  translationCacheMiB: number;
  totalMiB: number;
}

/** Pure: the limit of a VM with `guestMiB` of RAM under `accelerator`. */
export function vmMemoryLimit(
  guestMiB: number,
  overheadMiB: number,
  accelerator: Accelerator,
  tcgCacheMiB: number,
): VmMemoryLimit {
  const translationCacheMiB = accelerator === 'tcg' ? tcgCacheMiB : 0;
  return {
    guestMiB,
    overheadMiB,
    translationCacheMiB,
    totalMiB: guestMiB + overheadMiB + translationCacheMiB,
  };
}

/** "896 MiB (512 MiB guest memory + 128 MiB TCG translation cache + 256 MiB QEMU overhead …)". */
export function describeVmMemoryLimit(l: VmMemoryLimit): string {
  const cache = l.translationCacheMiB
    ? ` + ${l.translationCacheMiB} MiB TCG translation cache`
    : '';
  return (
    `${l.totalMiB} MiB (${l.guestMiB} MiB guest memory${cache} + ${l.overheadMiB} MiB QEMU ` +
    `overhead, the node agent's --vm-memory-overhead-mib)`
  );
}

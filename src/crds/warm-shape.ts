// Which sandboxes a warm VM can serve, and which pools a node keeps: pure functions of the specs.
// A warm VM serves a sandbox only if the VM is exactly what a cold boot would have given it (same
// vCPUs, memory, kernel, accelerator) and nothing the sandbox needs must exist at boot.
import type { VmSpec } from './katasandbox.js';
import { vmMemoryMiB, vmVcpus } from './sandbox-facts.js';

export interface WarmShape {
  vcpus: number;
  memoryMiB: number;
  kernel: string;
  accelerator: 'auto' | 'kvm' | 'tcg';
}

/** The shape of a VM spec, defaults filled in as the schema's. */
export function shapeOf(vm: VmSpec | undefined): WarmShape {
  return {
    vcpus: vmVcpus({ vm }),
    memoryMiB: vmMemoryMiB({ vm }),
    kernel: vm?.kernel ?? 'default',
    accelerator: vm?.accelerator ?? 'auto',
  };
}

/** A stable key of a shape (Lease annotation, metrics label): `<vcpus>c<memory>m-<kernel>-<accel>`. */
export function shapeKey(s: WarmShape): string {
  return `${s.vcpus}c${s.memoryMiB}m-${s.kernel}-${s.accelerator}`;
}

/** Whether the pool's nodeSelector admits a node with these labels (none: every node). */
export function selectsNode(
  selector: Record<string, string> | undefined,
  labels: Record<string, string>,
): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

/** PCI slots a warm VM (machine pc, nothing plugged at boot) has free for hot-plugged devices. */
export const WARM_HOTPLUG_SLOTS = 24;

/**
 * Why a sandbox cannot take a warm VM although one of its shape may be ready, or undefined when
 * it can: its drives and NICs are hot-plugged, one PCI slot each, and a warm VM has only so many.
 */
export function warmIneligibility(devices: number): string | undefined {
  if (devices > WARM_HOTPLUG_SLOTS) {
    return `it needs ${devices} block devices and NICs, more than the ${WARM_HOTPLUG_SLOTS} a running VM can take (PCI hot-plug slots)`;
  }
  return undefined;
}

// Which QEMU machine type a VM gets, and what each can do that the node agent relies on. Pure.
import type { Accelerator, MachineType } from './qemu-args.js';

/**
 * The node agent's --machine-type: one QEMU machine type for every VM, or `auto`: `microvm` for a
 * sandbox's own VM (all its devices are there at boot, and microvm boots with less CPU: no
 * firmware PCI enumeration) and `pc` for warm-pool VMs, which take a claimed sandbox's drives and
 * NICs by hot-plug.
 */
export type MachineSetting = MachineType | 'auto';

/** What a VM is booted for. */
export type VmRole = 'sandbox' | 'warm';

/** The machine type `setting` gives a VM booted for `role`, before chooseMachine's fallback. */
export function machineFor(setting: MachineSetting, role: VmRole): MachineType {
  if (setting !== 'auto') return setting;
  return role === 'warm' ? 'pc' : 'microvm';
}

/**
 * Whether drives and NICs can be plugged into a running VM of this machine type the way
 * drive-hotplug.ts and nic-hotplug.ts do it (device_add of a virtio PCI device on the root bus):
 * `pc`'s root bus takes hot-plugged devices (ACPI PCI hot-plug); q35's PCIe root bus does not
 * (it would need pcie-root-ports made at boot) and microvm has no PCI at all (virtio-mmio
 * transports are fixed at boot).
 */
export function canHotplug(machine: MachineType): boolean {
  return machine === 'pc';
}

/**
 * Why a running (warm) VM cannot take a sandbox needing `devices` block drives and NICs on this
 * machine type, or undefined when it can.
 */
export function hotplugIneligibility(machine: MachineType, devices: number): string | undefined {
  if (devices === 0 || canHotplug(machine)) return undefined;
  return `it needs ${devices} block devices and NICs, and the node's machine type ${machine} cannot hot-plug devices into a running VM (--machine-type pc can)`;
}

export interface MachineChoice {
  machine: MachineType;
  /** Set when the configured machine type was not used, saying why. */
  fallback?: string;
}

/**
 * The machine type a VM boots with. microvm under TCG needs the host's TSC rate (tsc_early_khz):
 * without it the guest calibrates the TSC against the emulated PIT, which fails now and then on a
 * busy host, and a microvm guest has no HPET or PM timer to fall back to, so the boot stalls in
 * calibrate_delay (bench/machine-boots.ts, microvm-notsc). Such a VM boots on pc instead.
 */
export function chooseMachine(
  configured: MachineType,
  accelerator: Accelerator,
  tscKhz: number | undefined,
): MachineChoice {
  if (configured === 'microvm' && accelerator === 'tcg' && tscKhz === undefined) {
    return {
      machine: 'pc',
      fallback:
        "microvm under TCG needs the host's TSC rate, and /proc/cpuinfo does not give it reliably (no tsc_known_freq); booting on pc",
    };
  }
  return { machine: configured };
}

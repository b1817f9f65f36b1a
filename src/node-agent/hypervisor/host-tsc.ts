// The host's TSC rate, which is the guest's under TCG (QEMU's TCG reads the host TSC for the
// guest's RDTSC). Given to the guest kernel as tsc_early_khz so that it never calibrates the TSC
// against the emulated PIT: under TCG on a busy host that calibration fails now and then, and a
// microvm guest (no HPET, no ACPI PM timer to fall back to) then stalls in early boot.
import { readFileSync } from 'node:fs';

/**
 * The TSC rate in kHz from /proc/cpuinfo's text, when it can be trusted: "cpu MHz" is the TSC's
 * rate only when the kernel knew it (flag tsc_known_freq: told by the hypervisor or CPUID) and
 * reports no measured clock instead (no aperfmperf, which makes "cpu MHz" the current clock).
 * Pure.
 */
export function tscKhzFromCpuinfo(cpuinfo: string): number | undefined {
  const first = cpuinfo.split(/\n\s*\n/)[0] ?? '';
  const field = (name: string): string | undefined =>
    new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(first)?.[1]?.trim();
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  if (!flags.has('tsc_known_freq') || !flags.has('constant_tsc') || flags.has('aperfmperf')) {
    return undefined;
  }
  const mhz = Number(field('cpu MHz'));
  if (!Number.isFinite(mhz) || mhz < 1 || mhz > 100_000) return undefined;
  return Math.round(mhz * 1000);
}

const readOnce = new Map<string, number | undefined>();

/**
 * This host's TSC rate in kHz, or undefined when /proc/cpuinfo does not say it reliably. Read
 * once per process (it does not change while the host runs), not on every VM launch.
 */
export function hostTscKhz(cpuinfoPath = '/proc/cpuinfo'): number | undefined {
  if (!readOnce.has(cpuinfoPath)) {
    let khz: number | undefined;
    try {
      khz = tscKhzFromCpuinfo(readFileSync(cpuinfoPath, 'utf8'));
    } catch {
      khz = undefined;
    }
    readOnce.set(cpuinfoPath, khz);
  }
  return readOnce.get(cpuinfoPath);
}

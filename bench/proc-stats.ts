// What /proc says about a process the benchmark started or found: CPU seconds and peak RSS.
import { readFileSync } from 'node:fs';

/** user + system CPU seconds of a process, from /proc (NaN once it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const f = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** Peak resident set (VmHWM) in MiB (NaN once it is gone). */
export function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** The 1-minute load average, printed beside every figure (TCG and CPU-bound work follow it). */
export function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

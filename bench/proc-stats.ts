// What /proc says about a process the benchmark started or found (the node agent's own readers).
import { readFileSync } from 'node:fs';
import { processCpuSeconds, processMemoryBytes } from '../src/node-agent/metrics/process-usage.js';

/** user + system CPU seconds of a process (NaN once it is gone). */
export function cpuSeconds(pid: number): number {
  return processCpuSeconds(pid) ?? NaN;
}

/** Peak resident set (VmHWM) in MiB (NaN once it is gone). */
export function peakRssMiB(pid: number): number {
  const bytes = processMemoryBytes(pid, 'VmHWM');
  return bytes === undefined ? NaN : bytes / 1024 / 1024;
}

/** The 1-minute load average, printed beside every figure (TCG and CPU-bound work follow it). */
export function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

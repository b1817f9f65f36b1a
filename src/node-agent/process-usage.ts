// What a QEMU costs the node, read from /proc at scrape time: CPU seconds (user + system, the
// figure that stays comparable under TCG whatever the host load) and resident memory.
import { readFileSync } from 'node:fs';

export interface ProcessUsage {
  cpuSeconds: number;
  residentBytes: number;
}

/** USER_HZ: the unit of /proc/<pid>/stat times on every Linux this runs on. */
const CLOCK_TICKS = 100;

/** Pure: utime + stime of a /proc/<pid>/stat line, in seconds (the command may hold spaces). */
export function cpuSecondsOfStat(stat: string): number | undefined {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime)
    ? (utime + stime) / CLOCK_TICKS
    : undefined;
}

/** Pure: VmRSS of a /proc/<pid>/status text, in bytes. */
export function residentBytesOfStatus(status: string): number | undefined {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** The usage of a live process; undefined once it is gone (or /proc says nothing usable). */
export function processUsage(pid: number): ProcessUsage | undefined {
  try {
    const cpuSeconds = cpuSecondsOfStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    const residentBytes = residentBytesOfStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (cpuSeconds === undefined || residentBytes === undefined) return undefined;
    return { cpuSeconds, residentBytes };
  } catch {
    return undefined;
  }
}

// What a QEMU costs the node, read from /proc at scrape time: CPU seconds (user + system, the
// figure that stays comparable under TCG whatever the host load) and resident memory. One file
// each, so a reader of one figure reads one file.
import { readFileSync } from 'node:fs';

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

/** Pure: a `<Field>: N kB` line of a /proc/<pid>/status text (VmRSS, VmHWM), in bytes. */
export function statusBytes(status: string, field: 'VmRSS' | 'VmHWM'): number | undefined {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

function readProc(pid: number, file: 'stat' | 'status'): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** CPU seconds of a live process; undefined once it is gone. */
export function processCpuSeconds(pid: number): number | undefined {
  const stat = readProc(pid, 'stat');
  return stat === undefined ? undefined : cpuSecondsOfStat(stat);
}

/** Resident (VmRSS) or peak resident (VmHWM) bytes of a live process; undefined once it is gone. */
export function processMemoryBytes(
  pid: number,
  field: 'VmRSS' | 'VmHWM' = 'VmRSS',
): number | undefined {
  const status = readProc(pid, 'status');
  return status === undefined ? undefined : statusBytes(status, field);
}

// What the guest kernel says in /proc about the whole VM: interface counters, memory, and which
// cgroup a process is in. Pure: the caller reads the files.
import type { GuestMemory, NetworkStats } from '../../generated/agent.js';

/**
 * /proc/net/dev: two header lines, then "name: 16 counters" per interface (8 receive, then 8
 * transmit: bytes packets errs drop fifo frame compressed multicast|colls carrier).
 */
export function parseNetDev(text: string): NetworkStats[] {
  const out: NetworkStats[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const n = m[2]!.trim().split(/\s+/).map(Number);
    if (n.length < 16 || n.some((v) => !Number.isSafeInteger(v))) continue;
    out.push({
      name: m[1]!,
      rxBytes: n[0]!,
      rxPackets: n[1]!,
      rxErrors: n[2]!,
      rxDropped: n[3]!,
      txBytes: n[8]!,
      txPackets: n[9]!,
      txErrors: n[10]!,
      txDropped: n[11]!,
    });
  }
  return out;
}

/** /proc/meminfo's MemTotal and MemAvailable ("kB" there means KiB), in bytes. */
export function parseMeminfo(text: string): GuestMemory | undefined {
  const kib = (key: string): number | undefined => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const total = kib('MemTotal');
  const available = kib('MemAvailable');
  if (total === undefined || available === undefined) return undefined;
  return { totalBytes: total, availableBytes: available };
}

/**
 * /proc/<pid>/cgroup: the process's cgroup v2 path ("0::/path"), as seen from the reader's cgroup
 * namespace; undefined when the process is in no v2 cgroup or the path is not a clean absolute one.
 */
export function unifiedCgroupPath(text: string): string | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith('0::')) continue;
    const p = line.slice(3).trim();
    if (!p.startsWith('/') || p.split('/').some((s) => s === '..' || s === '.')) return undefined;
    return p;
  }
  return undefined;
}

// A container's cgroup (v2, the guest's only hierarchy) as Kata 1.x's CgroupStats. 1.x filled that
// message from libcontainer's cgroup v1 figures; each v2 file maps onto the v1 field that means the
// same thing (CPU times in nanoseconds, memory+swap for the swap usage, 0 for "no pids limit"),
// as runc does on v2. Pure: the caller reads the files.
import type {
  BlkioStatsEntry,
  CgroupStats,
  HugetlbStats,
  MemoryData,
} from '../../generated/agent.js';

/** The cgroup files StatsContainer reads, by name relative to the cgroup's directory. */
export const CGROUP_FILES = [
  'cpu.stat',
  'memory.current',
  'memory.max',
  'memory.peak',
  'memory.events',
  'memory.stat',
  'memory.swap.current',
  'memory.swap.max',
  'pids.current',
  'pids.max',
  'io.stat',
] as const;

/** File name → contents; a file that is absent (controller not enabled) is simply missing. */
export type CgroupFiles = Partial<Record<string, string>>;

const NS_PER_US = 1000;

/** "key value" lines (cpu.stat, memory.stat, memory.events); lines that are not are skipped. */
export function parseFlatKeyed(text: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\S+)\s+(\d+)$/.exec(line.trim());
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** A single-value file: a number, or "max" (no limit) as undefined; absent or garbled as 0. */
export function parseLimit(text: string | undefined): number | undefined {
  const t = (text ?? '').trim();
  if (t === 'max') return undefined;
  return /^\d+$/.test(t) ? Number(t) : 0;
}

function parseValue(text: string | undefined): number {
  return parseLimit(text) ?? 0;
}

/** io.stat: "MAJ:MIN rbytes=… wbytes=… rios=… wios=… …" per device. */
export function parseIoStat(
  text: string | undefined,
): { major: number; minor: number; fields: Map<string, number> }[] {
  const out: { major: number; minor: number; fields: Map<string, number> }[] = [];
  for (const line of (text ?? '').split('\n')) {
    const [dev, ...pairs] = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!m) continue;
    const fields = new Map<string, number>();
    for (const p of pairs) {
      const kv = /^(\w+)=(\d+)$/.exec(p);
      if (kv) fields.set(kv[1]!, Number(kv[2]));
    }
    out.push({ major: Number(m[1]), minor: Number(m[2]), fields });
  }
  return out;
}

/** v1's per-device entries ("Read", "Write") from io.stat's read and write fields. */
function blkioEntries(
  devices: ReturnType<typeof parseIoStat>,
  read: string,
  write: string,
): BlkioStatsEntry[] {
  return devices.flatMap((d) => [
    { major: d.major, minor: d.minor, op: 'Read', value: d.fields.get(read) ?? 0 },
    { major: d.major, minor: d.minor, op: 'Write', value: d.fields.get(write) ?? 0 },
  ]);
}

/** The page sizes of the hugetlb.<size>.current files in a cgroup directory's listing. */
export function hugetlbSizes(names: string[]): string[] {
  return names.flatMap((n) => /^hugetlb\.([^.]+)\.current$/.exec(n)?.[1] ?? []).sort();
}

/**
 * The cgroup's figures as 1.x reported them. `unlimited` is what a limit of "max" reports: the
 * guest's memory, which bounds the container anyway (see docs/architecture.md).
 */
export function cgroupStats(files: CgroupFiles, unlimited: number): CgroupStats {
  const cpu = parseFlatKeyed(files['cpu.stat']);
  const memStat = parseFlatKeyed(files['memory.stat']);
  const events = parseFlatKeyed(files['memory.events']);
  const usage = parseValue(files['memory.current']);
  const limit = parseLimit(files['memory.max']);
  const swap = parseValue(files['memory.swap.current']);
  const swapLimit = parseLimit(files['memory.swap.max']);
  const memory: MemoryData = {
    usage,
    maxUsage: parseValue(files['memory.peak']),
    failcnt: events.get('max') ?? 0,
    limit: limit ?? unlimited,
  };
  // v1's memsw counts memory and swap together.
  const swapUsage: MemoryData = {
    usage: usage + swap,
    maxUsage: 0,
    failcnt: 0,
    limit: limit === undefined || swapLimit === undefined ? unlimited : limit + swapLimit,
  };
  const io = parseIoStat(files['io.stat']);
  const hugetlbStats: Record<string, HugetlbStats> = {};
  for (const size of hugetlbSizes(Object.keys(files))) {
    hugetlbStats[size] = {
      usage: parseValue(files[`hugetlb.${size}.current`]),
      maxUsage: 0,
      failcnt: parseFlatKeyed(files[`hugetlb.${size}.events`]).get('max') ?? 0,
    };
  }
  return {
    cpuStats: {
      cpuUsage: {
        totalUsage: (cpu.get('usage_usec') ?? 0) * NS_PER_US,
        // cgroup v2 keeps no per-CPU times.
        percpuUsage: [],
        usageInKernelmode: (cpu.get('system_usec') ?? 0) * NS_PER_US,
        usageInUsermode: (cpu.get('user_usec') ?? 0) * NS_PER_US,
      },
      throttlingData: {
        periods: cpu.get('nr_periods') ?? 0,
        throttledPeriods: cpu.get('nr_throttled') ?? 0,
        throttledTime: (cpu.get('throttled_usec') ?? 0) * NS_PER_US,
      },
    },
    memoryStats: {
      cache: memStat.get('file') ?? 0,
      usage: memory,
      swapUsage,
      kernelUsage: { usage: memStat.get('kernel') ?? 0, maxUsage: 0, failcnt: 0, limit: 0 },
      useHierarchy: true,
      stats: Object.fromEntries(memStat),
    },
    pidsStats: {
      current: parseValue(files['pids.current']),
      limit: parseLimit(files['pids.max']) ?? 0,
    },
    blkioStats: {
      ioServiceBytesRecursive: blkioEntries(io, 'rbytes', 'wbytes'),
      ioServicedRecursive: blkioEntries(io, 'rios', 'wios'),
      ioQueuedRecursive: [],
      ioServiceTimeRecursive: [],
      ioWaitTimeRecursive: [],
      ioMergedRecursive: [],
      ioTimeRecursive: [],
      sectorsRecursive: [],
    },
    hugetlbStats,
  };
}

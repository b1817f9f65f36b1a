// StatsContainer's parts: the cgroup v2 files and /proc files as the guest kernel writes them
// (fixtures below), mapped onto Kata 1.x's CgroupStats / NetworkStats / our GuestMemory.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  cgroupStats,
  hugetlbSizes,
  parseFlatKeyed,
  parseIoStat,
  parseLimit,
} from '../../../src/agent/guest/cgroup-stats.js';
import { ContainerStats } from '../../../src/agent/guest/container-stats.js';
import {
  parseMeminfo,
  parseNetDev,
  unifiedCgroupPath,
} from '../../../src/agent/guest/proc-stats.js';
import { StatusError } from '../../../src/agent/guest/status-error.js';

// Linux 6.1, a crun container's cgroup with the cpu, memory, pids and io controllers.
const CPU_STAT = `usage_usec 1523410
user_usec 1200000
system_usec 323410
nr_periods 40
nr_throttled 3
throttled_usec 51234
`;
const MEMORY_STAT = `anon 2232320
file 1048576
kernel 696320
kernel_stack 32768
sock 0
shmem 0
file_mapped 0
active_anon 2199552
inactive_anon 0
active_file 524288
inactive_file 524288
pgfault 1503
`;
const MEMORY_EVENTS = 'low 0\nhigh 0\nmax 2\noom 0\noom_kill 0\noom_group_kill 0\n';
const IO_STAT = '254:0 rbytes=40960 wbytes=8192 rios=10 wios=2 dbytes=0 dios=0\n';

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1400      14    0    0    0     0          0         0     1400      14    0    0    0     0       0          0
  eth0:  123456     321    1    2    0     0          0         0    65432     210    3    4    0     0       0          0
`;
const MEMINFO = `MemTotal:        1004096 kB
MemFree:          712344 kB
MemAvailable:     801200 kB
Buffers:               0 kB
`;

describe('cgroup v2 parsing', () => {
  it('reads flat keyed files, skipping lines that are not "key number"', () => {
    expect(parseFlatKeyed('a 1\nb  22\nbad line here\nc x\n')).toEqual(
      new Map([
        ['a', 1],
        ['b', 22],
      ]),
    );
    expect(parseFlatKeyed(undefined).size).toBe(0);
  });

  it('reads a limit: a number, "max" (none), or 0 when absent or garbled', () => {
    expect(parseLimit('536870912\n')).toBe(536870912);
    expect(parseLimit('max\n')).toBeUndefined();
    expect(parseLimit(undefined)).toBe(0);
    expect(parseLimit('-1')).toBe(0);
  });

  it('reads io.stat per device and the hugetlb page sizes of a directory', () => {
    expect(parseIoStat(`${IO_STAT}garbage\n8:16 rbytes=1\n`)).toEqual([
      {
        major: 254,
        minor: 0,
        fields: new Map([
          ['rbytes', 40960],
          ['wbytes', 8192],
          ['rios', 10],
          ['wios', 2],
          ['dbytes', 0],
          ['dios', 0],
        ]),
      },
      { major: 8, minor: 16, fields: new Map([['rbytes', 1]]) },
    ]);
    expect(
      hugetlbSizes(['hugetlb.2MB.current', 'hugetlb.2MB.max', 'hugetlb.1GB.current', 'cpu.stat']),
    ).toEqual(['1GB', '2MB']);
  });

  it("maps a container's files onto 1.x's CgroupStats (ns CPU times, memory+swap, v1 op names)", () => {
    const s = cgroupStats(
      {
        'cpu.stat': CPU_STAT,
        'memory.current': '3977216\n',
        'memory.max': '536870912\n',
        'memory.peak': '4194304\n',
        'memory.events': MEMORY_EVENTS,
        'memory.stat': MEMORY_STAT,
        'memory.swap.current': '4096\n',
        'memory.swap.max': '0\n',
        'pids.current': '3\n',
        'pids.max': '100\n',
        'io.stat': IO_STAT,
        'hugetlb.2MB.current': '2097152\n',
        'hugetlb.2MB.events': 'max 1\n',
      },
      1_028_194_304,
    );
    expect(s.cpuStats).toEqual({
      cpuUsage: {
        totalUsage: 1_523_410_000,
        percpuUsage: [],
        usageInKernelmode: 323_410_000,
        usageInUsermode: 1_200_000_000,
      },
      throttlingData: { periods: 40, throttledPeriods: 3, throttledTime: 51_234_000 },
    });
    expect(s.memoryStats).toMatchObject({
      cache: 1048576,
      usage: { usage: 3977216, maxUsage: 4194304, failcnt: 2, limit: 536870912 },
      swapUsage: { usage: 3977216 + 4096, limit: 536870912 },
      kernelUsage: { usage: 696320 },
      useHierarchy: true,
    });
    expect(s.memoryStats?.stats).toMatchObject({ inactive_file: 524288, pgfault: 1503 });
    expect(s.pidsStats).toEqual({ current: 3, limit: 100 });
    expect(s.blkioStats?.ioServiceBytesRecursive).toEqual([
      { major: 254, minor: 0, op: 'Read', value: 40960 },
      { major: 254, minor: 0, op: 'Write', value: 8192 },
    ]);
    expect(s.blkioStats?.ioServicedRecursive.map((e) => e.value)).toEqual([10, 2]);
    expect(s.hugetlbStats).toEqual({ '2MB': { usage: 2097152, maxUsage: 0, failcnt: 1 } });
  });

  it('no limits: memory reports the guest memory, pids 0; absent controllers report zeros', () => {
    const s = cgroupStats(
      { 'memory.current': '100\n', 'memory.max': 'max\n', 'pids.max': 'max\n' },
      1_000_000,
    );
    expect(s.memoryStats?.usage).toEqual({ usage: 100, maxUsage: 0, failcnt: 0, limit: 1_000_000 });
    expect(s.memoryStats?.swapUsage?.limit).toBe(1_000_000);
    expect(s.pidsStats).toEqual({ current: 0, limit: 0 });
    expect(s.cpuStats?.cpuUsage?.totalUsage).toBe(0);
    expect(s.blkioStats?.ioServiceBytesRecursive).toEqual([]);
  });
});

describe('/proc parsing', () => {
  it('reads /proc/net/dev: receive and transmit bytes, packets, errors, drops per interface', () => {
    expect(parseNetDev(NET_DEV)).toEqual([
      {
        name: 'lo',
        rxBytes: 1400,
        rxPackets: 14,
        rxErrors: 0,
        rxDropped: 0,
        txBytes: 1400,
        txPackets: 14,
        txErrors: 0,
        txDropped: 0,
      },
      {
        name: 'eth0',
        rxBytes: 123456,
        rxPackets: 321,
        rxErrors: 1,
        rxDropped: 2,
        txBytes: 65432,
        txPackets: 210,
        txErrors: 3,
        txDropped: 4,
      },
    ]);
    expect(parseNetDev('eth0: 1 2 3\n')).toEqual([]);
  });

  it('reads MemTotal and MemAvailable in bytes; a meminfo without them gives nothing', () => {
    expect(parseMeminfo(MEMINFO)).toEqual({
      totalBytes: 1004096 * 1024,
      availableBytes: 801200 * 1024,
    });
    expect(parseMeminfo('MemTotal: 10 kB\n')).toBeUndefined();
  });

  it("finds a process's cgroup v2 path; refuses relative or dotted paths", () => {
    expect(unifiedCgroupPath('4:memory:/x\n0::/c1\n')).toBe('/c1');
    expect(unifiedCgroupPath('0::/\n')).toBe('/');
    expect(unifiedCgroupPath('1:cpu:/a\n')).toBeUndefined();
    expect(unifiedCgroupPath('0::/a/../b\n')).toBeUndefined();
    expect(unifiedCgroupPath('0::a\n')).toBeUndefined();
  });
});

describe('ContainerStats', () => {
  let dir: string;
  const proc = (): string => path.join(dir, 'proc');
  const cg = (): string => path.join(dir, 'cgroup');

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'container-stats-'));
    mkdirSync(path.join(proc(), '42'), { recursive: true });
    mkdirSync(path.join(proc(), 'net'), { recursive: true });
    writeFileSync(path.join(proc(), '42', 'cgroup'), '0::/web\n');
    writeFileSync(path.join(proc(), 'meminfo'), MEMINFO);
    writeFileSync(path.join(proc(), 'net', 'dev'), NET_DEV);
    mkdirSync(path.join(cg(), 'web'), { recursive: true });
    writeFileSync(path.join(cg(), 'web', 'cpu.stat'), CPU_STAT);
    writeFileSync(path.join(cg(), 'web', 'memory.current'), '3977216\n');
    writeFileSync(path.join(cg(), 'web', 'memory.max'), 'max\n');
    writeFileSync(path.join(cg(), 'web', 'pids.current'), '2\n');
    writeFileSync(path.join(cg(), 'web', 'hugetlb.2MB.current'), '0\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const stats = (pids: Record<string, number | undefined>): ContainerStats =>
    new ContainerStats({
      initPid: async (id) => {
        if (!(id in pids)) throw new StatusError(status.NOT_FOUND, `${id} not found`);
        return pids[id];
      },
      cgroupRoot: cg(),
      procRoot: proc(),
    });

  it("reads the cgroup its init is in and the guest's interfaces", async () => {
    const res = await stats({ web: 42 }).stats('web');
    expect(res.cgroupStats?.cpuStats?.cpuUsage?.totalUsage).toBe(1_523_410_000);
    expect(res.cgroupStats?.memoryStats?.usage).toMatchObject({
      usage: 3977216,
      limit: 1004096 * 1024,
    });
    expect(res.cgroupStats?.pidsStats).toEqual({ current: 2, limit: 0 });
    expect(res.cgroupStats?.hugetlbStats).toEqual({
      '2MB': { usage: 0, maxUsage: 0, failcnt: 0 },
    });
    expect(res.networkStats.map((n) => [n.name, n.rxBytes, n.txBytes])).toEqual([
      ['lo', 1400, 1400],
      ['eth0', 123456, 65432],
    ]);
  });

  it('an unknown container stays NOT_FOUND; one that does not run (or whose init is gone) is FAILED_PRECONDITION', async () => {
    const s = stats({ idle: undefined, gone: 4242 });
    await expect(s.stats('nope')).rejects.toMatchObject({ code: status.NOT_FOUND });
    for (const id of ['idle', 'gone']) {
      await expect(s.stats(id)).rejects.toMatchObject({
        code: status.FAILED_PRECONDITION,
        message: `container "${id}" is not running`,
      });
    }
  });
});

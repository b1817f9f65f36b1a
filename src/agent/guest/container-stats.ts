// StatsContainer: the container's cgroup, found from its init process (crun puts it in a cgroup of
// its own), read file by file, and the guest's interfaces, which every container shares (the VM is
// the network namespace). 1.x asked libcontainer, which reported only veths it had configured
// itself — none in a Kata guest; we report the guest's interfaces (docs/architecture.md).
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { StatsContainerResponse } from '../../generated/agent.js';
import { CGROUP_FILES, cgroupStats, type CgroupFiles } from './cgroup-stats.js';
import { parseMeminfo, parseNetDev, unifiedCgroupPath } from './proc-stats.js';
import { failedPrecondition } from './status-error.js';

export interface ContainerStatsOptions {
  /** The container's init pid, or undefined when it does not run; throws NOT_FOUND for unknown ids. */
  initPid: (containerId: string) => Promise<number | undefined>;
  /** Defaults are the guest's real paths; tests point them elsewhere. */
  cgroupRoot?: string;
  procRoot?: string;
}

const readOrUndefined = (file: string): Promise<string | undefined> =>
  readFile(file, 'utf8').catch(() => undefined);

export class ContainerStats {
  private readonly cgroupRoot: string;
  private readonly procRoot: string;

  constructor(private readonly opts: ContainerStatsOptions) {
    this.cgroupRoot = opts.cgroupRoot ?? '/sys/fs/cgroup';
    this.procRoot = opts.procRoot ?? '/proc';
  }

  async stats(containerId: string): Promise<StatsContainerResponse> {
    const pid = await this.opts.initPid(containerId);
    const dir = pid === undefined ? undefined : await this.cgroupDir(pid);
    if (dir === undefined) {
      throw failedPrecondition(`container ${JSON.stringify(containerId)} is not running`);
    }
    const [files, meminfo, netDev] = await Promise.all([
      this.readCgroup(dir),
      readOrUndefined(path.join(this.procRoot, 'meminfo')),
      readOrUndefined(path.join(this.procRoot, 'net/dev')),
    ]);
    const unlimited = parseMeminfo(meminfo ?? '')?.totalBytes ?? 0;
    return {
      cgroupStats: cgroupStats(files, unlimited),
      networkStats: parseNetDev(netDev ?? ''),
    };
  }

  /** The cgroup directory of a container whose init runs. */
  async containerCgroupDir(containerId: string): Promise<string | undefined> {
    const pid = await this.opts.initPid(containerId);
    return pid === undefined ? undefined : this.cgroupDir(pid);
  }

  private async cgroupDir(pid: number): Promise<string | undefined> {
    const text = await readOrUndefined(path.join(this.procRoot, String(pid), 'cgroup'));
    const rel = text === undefined ? undefined : unifiedCgroupPath(text);
    return rel === undefined ? undefined : path.join(this.cgroupRoot, rel);
  }

  private async readCgroup(dir: string): Promise<CgroupFiles> {
    const names = await readdir(dir).catch(() => [] as string[]);
    const hugetlb = names.filter((n) => /^hugetlb\.[^.]+\.(current|events)$/.test(n));
    const wanted = [...CGROUP_FILES, ...hugetlb];
    const texts = await Promise.all(wanted.map((n) => readOrUndefined(path.join(dir, n))));
    const files: CgroupFiles = {};
    wanted.forEach((n, i) => {
      if (texts[i] !== undefined) files[n] = texts[i];
    });
    return files;
  }
}

// A cgroup of its own for each VM, outside the node agent's (its Pod's) cgroups, in every mounted
// hierarchy: <root>/<hierarchy>/<parent>/<uid>. QEMU is started inside it (kata-host-fs joins it
// before the exec, so every page QEMU touches is charged there from the start), the VM's memory
// limit is set there, and neither the kubelet nor a restart of the node agent's container touches
// it. Needed where no systemd makes scopes (the systemd-scope launch does the same through systemd).
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../observability/logger.js';
import { readMountInfo, type MountInfoEntry } from '../storage/mountinfo.js';
import {
  cgroupHierarchies,
  checkCgroupParent,
  memoryLimitFile,
  parentDirs,
  parseOomKills,
  vmCgroupDir,
  type CgroupHierarchy,
} from './cgroup-hierarchies.js';

const isCode = (err: unknown, ...codes: string[]): boolean =>
  codes.includes((err as NodeJS.ErrnoException).code ?? '');

export interface VmCgroupsOptions {
  /** Where the hierarchies are mounted (/sys/fs/cgroup; the host's, mounted in, in a Pod). */
  root: string;
  /** Relative to each hierarchy's root, e.g. kata-sandboxes. */
  parent: string;
  mounts?: () => Promise<MountInfoEntry[]>;
  logger: Logger;
}

export class VmCgroups {
  private hierarchies: Promise<CgroupHierarchy[]> | undefined;
  private readonly mounts: () => Promise<MountInfoEntry[]>;

  constructor(private readonly opts: VmCgroupsOptions) {
    checkCgroupParent(opts.parent);
    this.mounts = opts.mounts ?? readMountInfo;
  }

  private found(): Promise<CgroupHierarchy[]> {
    this.hierarchies ??= this.mounts().then((m) => {
      const hs = cgroupHierarchies(m, this.opts.root);
      if (hs.length === 0)
        throw new Error(`no cgroup hierarchy is mounted under ${this.opts.root}`);
      return hs;
    });
    return this.hierarchies;
  }

  /** The hierarchies' mount points (fails when none is mounted under the root). */
  async hierarchyMounts(): Promise<string[]> {
    return (await this.found()).map((h) => h.mountPoint);
  }

  /**
   * Makes uid's cgroup in every hierarchy with the memory limit set; returns the directories for
   * `kata-host-fs exec --cgroup`. Idempotent.
   */
  async create(uid: string, memoryLimitBytes: number): Promise<string[]> {
    const dirs: string[] = [];
    for (const h of await this.found()) {
      const v2Controllers = h.version === 2 ? await this.v2Controllers(h) : [];
      const memoryFile = memoryLimitFile(h, v2Controllers);
      const chain = [...parentDirs(h, this.opts.parent), vmCgroupDir(h, this.opts.parent, uid)];
      let above = h.mountPoint;
      for (const dir of chain) {
        // v2: a child gets the memory controller only if its parent hands it down.
        if (h.version === 2 && memoryFile) await this.enableMemory(above);
        await mkdir(dir).catch((err: unknown) => {
          if (!isCode(err, 'EEXIST')) throw err;
        });
        if (h.controllers.includes('cpuset')) await this.inheritCpuset(above, dir);
        above = dir;
      }
      if (memoryFile) await writeFile(path.join(above, memoryFile), String(memoryLimitBytes));
      dirs.push(above);
    }
    return dirs;
  }

  /** Removes uid's cgroups (once QEMU is gone; a cgroup with a process in it stays: EBUSY). */
  async remove(uid: string): Promise<void> {
    const hs = await this.found();
    await Promise.all(
      hs.map((h) => {
        const dir = vmCgroupDir(h, this.opts.parent, uid);
        return rmdirRetrying(dir).catch((err: unknown) => {
          this.opts.logger.warn({ err, dir }, 'removing the VM cgroup failed');
        });
      }),
    );
  }

  /** The OOM kills in uid's memory cgroup (undefined without one). */
  async oomKills(uid: string): Promise<number | undefined> {
    for (const h of await this.found()) {
      const file = h.version === 1 ? 'memory.oom_control' : 'memory.events';
      if (h.version === 1 && !h.controllers.includes('memory')) continue;
      try {
        const n = parseOomKills(
          await readFile(path.join(vmCgroupDir(h, this.opts.parent, uid), file), 'utf8'),
        );
        if (n !== undefined) return n;
      } catch {
        // no memory controller here (hybrid's unified hierarchy), or no cgroup
      }
    }
    return undefined;
  }

  private async v2Controllers(h: CgroupHierarchy): Promise<string[]> {
    const text = await readFile(path.join(h.mountPoint, 'cgroup.controllers'), 'utf8').catch(
      () => '',
    );
    return text.trim().split(/\s+/).filter(Boolean);
  }

  private async enableMemory(dir: string): Promise<void> {
    const file = path.join(dir, 'cgroup.subtree_control');
    const now = await readFile(file, 'utf8');
    if (!now.split(/\s+/).includes('memory')) await writeFile(file, '+memory');
  }

  /** A new v1 cpuset cgroup has no CPUs and no memory nodes; nothing could join it. */
  private async inheritCpuset(parent: string, dir: string): Promise<void> {
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const mine = (await readFile(path.join(dir, f), 'utf8')).trim();
      if (mine === '')
        await writeFile(path.join(dir, f), await readFile(path.join(parent, f), 'utf8'));
    }
  }
}

/** A cgroup is busy for a moment after its last process exited (the exit is still being reaped). */
async function rmdirRetrying(dir: string, attempts = 10): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      if (isCode(err, 'ENOENT')) return;
      if (!isCode(err, 'EBUSY') || i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 50 * i));
    }
  }
}

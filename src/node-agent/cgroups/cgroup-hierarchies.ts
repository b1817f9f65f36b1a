// The cgroup hierarchies mounted under a cgroup root (v1 controllers, named v1 hierarchies, the v2
// unified one) and where one VM's cgroup lives in each. Pure: input is mountinfo, output paths.
import path from 'node:path';
import type { MountInfoEntry } from '../storage/mountinfo.js';

export interface CgroupHierarchy {
  mountPoint: string;
  version: 1 | 2;
  /** v1: the controllers (and name=…) of the mount; v2: empty (see cgroup.controllers). */
  controllers: readonly string[];
}

const V1_OPTIONS_NOT_CONTROLLERS = new Set(['rw', 'ro', 'noprefix', 'xattr', 'clone_children']);

/** Every cgroup mount at or below `root` (one per hierarchy; a hierarchy mounted twice counts once). */
export function cgroupHierarchies(
  mounts: readonly MountInfoEntry[],
  root: string,
): CgroupHierarchy[] {
  const base = root.endsWith('/') ? root : `${root}/`;
  const seen = new Set<string>();
  const out: CgroupHierarchy[] = [];
  for (const m of mounts) {
    if (m.mountPoint !== root && !m.mountPoint.startsWith(base)) continue;
    if (m.fsType !== 'cgroup' && m.fsType !== 'cgroup2') continue;
    const version = m.fsType === 'cgroup2' ? 2 : 1;
    const controllers =
      version === 2
        ? []
        : m.superOptions.filter(
            (o) =>
              !V1_OPTIONS_NOT_CONTROLLERS.has(o) && (!o.includes('=') || o.startsWith('name=')),
          );
    const key = `${version}:${[...controllers].sort().join(',')}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ mountPoint: m.mountPoint, version, controllers });
  }
  return out;
}

const SEGMENT = /^[A-Za-z0-9_.:-]{1,128}$/;

/** A relative cgroup path of the node admin's choosing, e.g. kata-sandboxes or kata/sandboxes. */
export function checkCgroupParent(parent: string): string {
  const parts = parent.split('/');
  if (parts.some((p) => !SEGMENT.test(p) || p === '.' || p === '..')) {
    throw new Error(
      `VM cgroup parent ${JSON.stringify(parent)} must be a relative path of names made of letters, digits, '_', '.', ':' and '-'`,
    );
  }
  return parent;
}

/** The directory of `uid`'s VM cgroup in one hierarchy. */
export function vmCgroupDir(h: CgroupHierarchy, parent: string, uid: string): string {
  if (!SEGMENT.test(uid) || uid === '.' || uid === '..') {
    throw new Error(`${JSON.stringify(uid)} cannot name a cgroup`);
  }
  return path.join(h.mountPoint, checkCgroupParent(parent), uid);
}

/** The parent's directories from the hierarchy's root down (created in this order). */
export function parentDirs(h: CgroupHierarchy, parent: string): string[] {
  const parts = checkCgroupParent(parent).split('/');
  return parts.map((_, i) => path.join(h.mountPoint, ...parts.slice(0, i + 1)));
}

/**
 * The memory limit file of one hierarchy, if it has the memory controller. v2 needs
 * the controller enabled in every ancestor's cgroup.subtree_control (`v2Controllers` is the
 * root's cgroup.controllers).
 */
export function memoryLimitFile(
  h: CgroupHierarchy,
  v2Controllers: readonly string[],
): 'memory.limit_in_bytes' | 'memory.max' | undefined {
  if (h.version === 1)
    return h.controllers.includes('memory') ? 'memory.limit_in_bytes' : undefined;
  return v2Controllers.includes('memory') ? 'memory.max' : undefined;
}

/** How many times the kernel's OOM killer killed in a cgroup: `oom_kill N` of memory.oom_control (v1) or memory.events (v2). */
export function parseOomKills(text: string): number | undefined {
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

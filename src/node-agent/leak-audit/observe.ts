// The leak audit's eyes: reads the host (directories under the node agent's roots, mountinfo,
// /proc, cgroupfs, `ip -j` in each network namespace, host-local's files) and reports what it saw
// per kind and place, or that it could not look. Never changes anything.
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { NodeAgentConfig } from '../config.js';
import { cgroupHierarchies } from '../cgroups/cgroup-hierarchies.js';
import { loadConfList } from '../network/cni.js';
import { inNetns, runCommand, runOk, type Runner } from '../network/exec.js';
import { LINKS_ARGV, parseLinks } from '../network/netns-claim.js';
import { readMountInfo, type MountInfoEntry } from '../storage/mountinfo.js';
import type { HostObject, KindObservation } from './classify.js';
import {
  hostLocalContainerId,
  hostLocalDirs,
  isHostLocalAllocationFile,
  logDirUid,
  mountObjects,
  netnsObjects,
  parseCmdline,
  qemuSandboxUid,
  tapObjects,
} from './host-objects.js';
import type { LeakKind } from './kinds.js';

export type AuditRoots = Pick<
  NodeAgentConfig,
  | 'stateDir'
  | 'runDir'
  | 'logDir'
  | 'netnsRoots'
  | 'cniConfDir'
  | 'cniNetwork'
  | 'cniNodeNetns'
  | 'cgroupRoot'
  | 'vmCgroupParent'
  | 'qemuLaunch'
  | 'imageCacheDir'
>;

export interface ObserveDeps {
  run?: Runner;
  mounts?: () => Promise<MountInfoEntry[]>;
  /** /proc (tests may point elsewhere). */
  procRoot?: string;
  timeoutMs?: number;
}

const errText = (err: unknown): string =>
  (err as NodeJS.ErrnoException).code === 'ENOENT'
    ? 'does not exist'
    : ((err as Error).message ?? String(err));

const seen = (kind: LeakKind, place: string, objects: HostObject[]): KindObservation => ({
  kind,
  place,
  checked: true,
  objects,
});
const notSeen = (kind: LeakKind, place: string, note: string): KindObservation => ({
  kind,
  place,
  checked: false,
  note,
  objects: [],
});

/** Each entry of `dir` is one object of `kind`, its uid given by `uidOf`. */
async function dirObjects(
  kind: LeakKind,
  dir: string,
  uidOf: (name: string) => string | undefined = (n) => n,
): Promise<KindObservation> {
  try {
    const names = await readdir(dir);
    const objects = names.flatMap((n) => {
      const uid = uidOf(n);
      return uid === undefined ? [] : [{ kind, uid, where: path.join(dir, n) }];
    });
    return seen(kind, dir, objects);
  } catch (err) {
    return notSeen(kind, dir, errText(err));
  }
}

function imageCacheDir(roots: AuditRoots): string {
  return roots.imageCacheDir ?? path.join(roots.stateDir, 'images');
}

async function leaseObjects(roots: AuditRoots): Promise<KindObservation> {
  const file = path.join(imageCacheDir(roots), 'leases.json');
  let saved: unknown;
  try {
    saved = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    return notSeen('image-lease', file, errText(err));
  }
  if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) {
    return notSeen('image-lease', file, 'not a JSON object of uid → digests');
  }
  const objects = Object.entries(saved as Record<string, unknown>).map(([uid, digests]) => ({
    kind: 'image-lease' as const,
    uid,
    where: `${file}: ${Array.isArray(digests) ? digests.join(', ') : String(digests)}`,
  }));
  return seen('image-lease', file, objects);
}

async function qemuObjects(roots: AuditRoots, procRoot: string): Promise<KindObservation> {
  let pids: string[];
  try {
    pids = (await readdir(procRoot)).filter((n) => /^\d+$/.test(n));
  } catch (err) {
    return notSeen('qemu', procRoot, errText(err));
  }
  const objects: HostObject[] = [];
  for (const pid of pids) {
    // A process may exit between readdir and here: nothing to see then.
    const raw = await readFile(path.join(procRoot, pid, 'cmdline'), 'utf8').catch(() => '');
    const uid = qemuSandboxUid(parseCmdline(raw), roots.runDir);
    if (uid === undefined) continue;
    objects.push({ kind: 'qemu', uid, pid: Number(pid), where: `pid ${pid}` });
  }
  return seen('qemu', `${procRoot}/*/cmdline`, objects);
}

async function cgroupObjects(
  roots: AuditRoots,
  mounts: readonly MountInfoEntry[],
): Promise<KindObservation[]> {
  if (roots.vmCgroupParent === 'none') {
    return [notSeen('cgroup', roots.cgroupRoot, 'VM cgroups are off (VM_CGROUP_PARENT none)')];
  }
  if (roots.qemuLaunch === 'systemd-scope') {
    return [notSeen('cgroup', roots.cgroupRoot, 'QEMU runs in systemd scopes (QEMU_LAUNCH)')];
  }
  const hierarchies = cgroupHierarchies(mounts, roots.cgroupRoot);
  if (hierarchies.length === 0) {
    return [notSeen('cgroup', roots.cgroupRoot, 'no cgroup hierarchy is mounted there')];
  }
  const out: KindObservation[] = [];
  for (const h of hierarchies) {
    const dir = path.join(h.mountPoint, roots.vmCgroupParent);
    try {
      const entries = await readdir(dir, { withFileTypes: true });
      const objects = entries
        .filter((e) => e.isDirectory())
        .map((e) => ({ kind: 'cgroup' as const, uid: e.name, where: path.join(dir, e.name) }));
      out.push(seen('cgroup', dir, objects));
    } catch (err) {
      // No parent yet: no VM ever had a cgroup in this hierarchy, so none is left there.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') out.push(seen('cgroup', dir, []));
      else out.push(notSeen('cgroup', dir, errText(err)));
    }
  }
  return out;
}

/** The netns roots, each once (/var/run is usually /run). */
async function distinctRoots(roots: readonly string[]): Promise<string[]> {
  const out = new Map<string, string>();
  for (const r of roots) {
    const real = await realpath(r).catch(() => r);
    if (!out.has(real)) out.set(real, r);
  }
  return [...out.values()];
}

async function netnsAndTapObjects(
  roots: AuditRoots,
  run: Runner,
  timeoutMs: number,
): Promise<KindObservation[]> {
  const out: KindObservation[] = [];
  // Namespaces to look for taps in, each once (by nsfs identity): the node's, the CNI node
  // namespace, every one under the netns roots.
  const namespaces: Array<{ label: string; nsPath: string | undefined }> = [
    { label: 'the node namespace', nsPath: undefined },
    ...(roots.cniNodeNetns ? [{ label: roots.cniNodeNetns, nsPath: roots.cniNodeNetns }] : []),
  ];
  for (const root of await distinctRoots(roots.netnsRoots)) {
    try {
      const names = await readdir(root);
      out.push(seen('netns', root, netnsObjects(names, root)));
      for (const n of names.sort()) {
        namespaces.push({ label: path.join(root, n), nsPath: path.join(root, n) });
      }
    } catch (err) {
      out.push(notSeen('netns', root, errText(err)));
    }
  }
  const identities = new Set<string>();
  for (const ns of namespaces) {
    if (ns.nsPath !== undefined) {
      const id = await stat(ns.nsPath, { bigint: true }).then(
        (s) => `${s.dev}:${s.ino}`,
        () => undefined,
      );
      if (id === undefined) continue; // gone since the listing
      if (identities.has(id)) continue;
      identities.add(id);
    }
    try {
      const links = parseLinks(await runOk(run, inNetns(ns.nsPath, LINKS_ARGV), { timeoutMs }));
      out.push(seen('tap', ns.label, tapObjects(links, ns.label)));
    } catch (err) {
      out.push(notSeen('tap', ns.label, errText(err)));
    }
  }
  return out;
}

async function ipamObjects(roots: AuditRoots): Promise<KindObservation[]> {
  let dirs: string[];
  try {
    dirs = hostLocalDirs(await loadConfList(roots.cniConfDir, roots.cniNetwork));
  } catch (err) {
    return [notSeen('ipam', roots.cniConfDir, `no CNI network to look at: ${errText(err)}`)];
  }
  if (dirs.length === 0) {
    return [notSeen('ipam', roots.cniConfDir, 'the CNI network uses no host-local IPAM')];
  }
  const out: KindObservation[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = (await readdir(dir)).filter(isHostLocalAllocationFile).sort();
    } catch (err) {
      out.push(notSeen('ipam', dir, errText(err)));
      continue;
    }
    const objects: HostObject[] = [];
    for (const n of names) {
      const file = path.join(dir, n);
      const uid = hostLocalContainerId(await readFile(file, 'utf8').catch(() => ''));
      if (uid !== undefined) objects.push({ kind: 'ipam', uid, where: file });
    }
    out.push(seen('ipam', dir, objects));
  }
  return out;
}

/** Everything of every kind the node agent makes, as seen right now. Read-only. */
export async function observeHost(
  roots: AuditRoots,
  deps: ObserveDeps = {},
): Promise<KindObservation[]> {
  const run = deps.run ?? runCommand;
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const mounts = await (deps.mounts ?? readMountInfo)();
  const shareRoot = path.join(roots.runDir, 'shared');
  const viewsRoot = path.join(roots.stateDir, 'rootfs-views');
  const mountSeen = (kind: 'share-mount' | 'view-mount', root: string): KindObservation =>
    seen(kind, `/proc/self/mountinfo under ${root}`, mountObjects(mounts, root, kind));
  return [
    await qemuObjects(roots, deps.procRoot ?? '/proc'),
    await dirObjects('state-dir', path.join(roots.stateDir, 'sandboxes')),
    await dirObjects('run-dir', path.join(roots.runDir, 'sandboxes')),
    await dirObjects('share-dir', shareRoot),
    mountSeen('share-mount', shareRoot),
    await dirObjects('view-dir', viewsRoot),
    mountSeen('view-mount', viewsRoot),
    await leaseObjects(roots),
    await dirObjects('log-dir', roots.logDir, logDirUid),
    ...(await cgroupObjects(roots, mounts)),
    ...(await netnsAndTapObjects(roots, run, timeoutMs)),
    ...(await ipamObjects(roots)),
  ];
}

// From raw host readings (argv, mountinfo, links, CNI files, directory names) to the sandbox objects
// they are, with the same names the node agent gives them. Pure.
import path from 'node:path';
import type { CniConfList } from '../network/cni.js';
import { AGENT_NETNS_PREFIX, type ObservedLink } from '../network/netns-claim.js';
import { TAP_SUFFIX, tapOwnerOf } from '../network/tcfilter.js';
import type { MountInfoEntry } from '../storage/mountinfo.js';
import type { HostObject } from './classify.js';

/** `-name ksb-<uid>[,opts]` (hypervisor/sandbox-vm.ts) of a QEMU whose files are under runRoot. */
export function qemuSandboxUid(argv: readonly string[], runRoot: string): string | undefined {
  const i = argv.indexOf('-name');
  const name = i >= 0 ? argv[i + 1] : undefined;
  if (!name?.startsWith('ksb-')) return undefined;
  const sandboxes = `${path.join(runRoot, 'sandboxes')}/`;
  if (!argv.some((a) => a.includes(sandboxes))) return undefined;
  const uid = name.slice('ksb-'.length).split(',')[0];
  return uid === '' ? undefined : uid;
}

/** /proc/<pid>/cmdline → argv. */
export function parseCmdline(raw: string): string[] {
  const parts = raw.split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

/** `<namespace>_<name>_<uid>` (runtime/container-log.ts): namespaces and names have no '_'. */
export function logDirUid(dirName: string): string | undefined {
  const parts = dirName.split('_');
  return parts.length === 3 && parts[2] !== '' ? parts[2] : undefined;
}

/** Mount points under `<root>/<uid>/...` as objects of `kind`, the uid the first component. */
export function mountObjects(
  entries: readonly MountInfoEntry[],
  root: string,
  kind: 'share-mount' | 'view-mount',
): HostObject[] {
  const base = `${root.replace(/\/+$/, '')}/`;
  return entries
    .filter((e) => e.mountPoint.startsWith(base))
    .map((e) => ({
      kind,
      uid: e.mountPoint.slice(base.length).split('/')[0] ?? '',
      where: `${e.mountPoint} (${e.fsType})`,
    }))
    .filter((o) => o.uid !== '');
}

/** `kata-<uid>` namespaces (network/cni.ts sandboxNetnsName) among a netns root's entries. */
export function netnsObjects(names: readonly string[], root: string): HostObject[] {
  return names
    .filter((n) => n.startsWith(AGENT_NETNS_PREFIX) && n.length > AGENT_NETNS_PREFIX.length)
    .map((n) => ({
      kind: 'netns' as const,
      uid: n.slice(AGENT_NETNS_PREFIX.length),
      where: path.join(root, n),
    }));
}

/** Taps the agent made (`tap<N>_kata`, kind tun, owner in the ifalias) in one namespace. */
export function tapObjects(links: readonly ObservedLink[], namespace: string): HostObject[] {
  const out: HostObject[] = [];
  for (const l of links) {
    const uid = tapOwnerOf(l.alias);
    if (l.kind !== 'tun' || !l.name.endsWith(TAP_SUFFIX) || uid === undefined) continue;
    out.push({ kind: 'tap', uid, where: `${l.name} in ${namespace}` });
  }
  return out;
}

export const HOST_LOCAL_DEFAULT_DATA_DIR = '/var/lib/cni/networks';

/** Directories host-local keeps this network's allocations in (one per host-local plugin). */
export function hostLocalDirs(list: CniConfList): string[] {
  const dirs = new Set<string>();
  for (const p of list.plugins) {
    const ipam = p['ipam'] as { type?: unknown; dataDir?: unknown } | undefined;
    if (ipam?.type !== 'host-local') continue;
    const dataDir = typeof ipam.dataDir === 'string' ? ipam.dataDir : HOST_LOCAL_DEFAULT_DATA_DIR;
    dirs.add(path.join(dataDir, list.name));
  }
  return [...dirs];
}

/** host-local's bookkeeping files in a network's dir, not allocations. */
export function isHostLocalAllocationFile(name: string): boolean {
  return name !== 'lock' && !name.startsWith('last_reserved_ip');
}

/** An allocation file's content: the container id (the sandbox uid) on the first line. */
export function hostLocalContainerId(content: string): string | undefined {
  const first = content.split(/\r?\n/)[0]?.trim();
  return first ? first : undefined;
}

// /proc/self/mountinfo: the node agent's one reader of the mount table (the share's bind mounts,
// the image views' overlays and the lower dirs they use). Pure parsing; one reader.
import { readFile } from 'node:fs/promises';

export interface MountInfoEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  /** Per-mount options (ro, nosuid, …). */
  options: string[];
  /** Filesystem options (overlay: lowerdir=…, upperdir=…, workdir=…). */
  superOptions: string[];
}

function unescape(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const head = line.slice(0, sep).split(' ');
    const tail = line.slice(sep + 3).split(' ');
    if (head.length < 6 || tail.length < 3) continue;
    out.push({
      mountPoint: unescape(head[4] ?? ''),
      options: (head[5] ?? '').split(','),
      fsType: tail[0] ?? '',
      source: unescape(tail[1] ?? ''),
      superOptions: (tail[2] ?? '').split(','),
    });
  }
  return out;
}

export async function readMountInfo(): Promise<MountInfoEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** Mount points at or below `dir`, deepest first (the order to unmount them in). Pure. */
export function mountsUnder(entries: readonly MountInfoEntry[], dir: string): MountInfoEntry[] {
  const base = dir.endsWith('/') ? dir : `${dir}/`;
  return entries
    .filter((e) => e.mountPoint === dir || e.mountPoint.startsWith(base))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length);
}

/** The lower directories of every overlay mount (`lowerdir=a:b`). */
export function overlayLowerDirs(entries: readonly MountInfoEntry[]): string[] {
  return entries
    .filter((e) => e.fsType === 'overlay')
    .flatMap((e) => e.superOptions.filter((o) => o.startsWith('lowerdir=')))
    .flatMap((o) => o.slice('lowerdir='.length).split(':'))
    .map(unescape);
}

// /proc/self/mountinfo, with the filesystem type and super options overlay mounts need (the
// lowerdir an overlay uses). Pure parsing; one reader.
import { readFile } from 'node:fs/promises';

export interface MountEntry {
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

export function parseMountEntries(text: string): MountEntry[] {
  const out: MountEntry[] = [];
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

export async function readMountEntries(): Promise<MountEntry[]> {
  return parseMountEntries(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** Mount points at or below `dir`, deepest first (the order to unmount them in). */
export function mountsAtOrBelow(entries: readonly MountEntry[], dir: string): MountEntry[] {
  const base = dir.endsWith('/') ? dir : `${dir}/`;
  return entries
    .filter((e) => e.mountPoint === dir || e.mountPoint.startsWith(base))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length);
}

/** The lower directories of every overlay mount (`lowerdir=a:b`). */
export function overlayLowerDirs(entries: readonly MountEntry[]): string[] {
  return entries
    .filter((e) => e.fsType === 'overlay')
    .flatMap((e) => e.superOptions.filter((o) => o.startsWith('lowerdir=')))
    .flatMap((o) => o.slice('lowerdir='.length).split(':'))
    .map(unescape);
}

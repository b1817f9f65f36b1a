// The helper's command lines, built from argv arrays only (never a shell string). Pure.
import path from 'node:path';
import type { AllowedRoot, BeneathBind, FdOpen, HostFs } from './types.js';

/** Arguments of `check`: the path and each root once per type (duplicates dropped). */
export function checkArgs(p: string, roots: readonly AllowedRoot[]): string[] {
  const flags = new Set<string>();
  for (const r of roots) {
    if (!path.isAbsolute(r.root))
      throw new Error(`allowed root ${JSON.stringify(r.root)} is not absolute`);
    flags.add(`${r.type}=${path.resolve(r.root)}`);
  }
  // --flag=value throughout: a value is never taken for a flag, whatever it starts with.
  return ['check', `--path=${p}`, ...[...flags].map((f) => `--root=${f}`)];
}

/**
 * argv (the helper binary first) that makes the helper open each path beneath its root (checked
 * again there, with the same type) at `fd`, then exec `argv` with those descriptors inherited.
 * With `cgroups`, the helper first moves itself into those cgroup directories, so the program
 * starts in them. Throws on a malformed open (a programming error, not tenant input: paths were checked before).
 */
export function execWithFdsArgv(
  fs: HostFs,
  opens: readonly FdOpen[],
  argv: readonly string[],
  opts: { noSetid?: boolean; cgroups?: readonly string[] } = {},
): string[] {
  if (argv.length === 0) throw new Error('execWithFdsArgv: no program to run');
  const cgroups = (opts.cgroups ?? []).map((dir) => {
    if (!path.isAbsolute(dir)) throw new Error(`cgroup ${JSON.stringify(dir)} is not absolute`);
    return `--cgroup=${dir}`;
  });
  const seen = new Set<number>();
  const flags: string[] = [];
  for (const o of opens) {
    if (!Number.isInteger(o.fd) || o.fd < 3) throw new Error(`descriptor ${o.fd} is not >= 3`);
    if (seen.has(o.fd)) throw new Error(`descriptor ${o.fd} is opened twice`);
    seen.add(o.fd);
    if (!path.isAbsolute(o.root) || o.root.includes(':')) {
      throw new Error(`root ${JSON.stringify(o.root)} must be absolute and free of ':'`);
    }
    if (!path.isAbsolute(o.path)) throw new Error(`${JSON.stringify(o.path)} is not absolute`);
    if (o.type === 'dir' && !o.readOnly)
      throw new Error(`directory ${o.path} can only be opened read-only`);
    flags.push(`--open=${o.fd}=${o.type}:${o.readOnly ? 'ro' : 'rw'}:${o.root}:${o.path}`);
  }
  return [
    fs.binary,
    'exec',
    ...(opts.noSetid ? ['--no-setid'] : []),
    ...cgroups,
    ...flags,
    '--',
    ...argv,
  ];
}

export function bindArgs(m: BeneathBind): string[] {
  return [
    'bind',
    `--source-root=${m.sourceRoot}`,
    `--source=${m.source}`,
    `--type=${m.type}`,
    `--target-root=${m.targetRoot}`,
    `--target=${m.target}`,
    ...(m.readOnly ? ['--ro'] : []),
  ];
}

export function umountArgs(targetRoot: string, target: string, detach: boolean): string[] {
  return [
    'umount',
    `--target-root=${targetRoot}`,
    `--target=${target}`,
    ...(detach ? ['--detach'] : []),
  ];
}

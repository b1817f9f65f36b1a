// Which network namespace paths a sandbox may name (`spec.network.netnsPath`): only bind-mounted
// namespaces under allow-listed roots. A /proc/<pid>/ns/net path is refused outright: it could
// name the node's own namespace (pid 1) and the sandbox's taps and tc rules would land there.
import { realpathSync, statfsSync, statSync } from 'node:fs';
import path from 'node:path';
import { InvalidInputError } from '../../agent/errors.js';

export const DEFAULT_NETNS_ROOTS: readonly string[] = ['/run/netns', '/var/run/netns'];
export const NETNS_PATH_FIELD = 'spec.network.netnsPath';
/** statfs f_type of nsfs (linux/magic.h NSFS_MAGIC). */
export const NSFS_MAGIC = 0x6e736673;

export interface NetnsPathOptions {
  roots?: readonly string[];
  /** Check that the file is a namespace (an nsfs bind mount); default true. */
  requireNsfs?: boolean;
  field?: string;
}

const realOrUndefined = (p: string): string | undefined => {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
};

/**
 * Checks a namespace path and returns its real path. Throws InvalidInputError naming the field
 * (`spec.network.netnsPath`) when the path is relative, under /proc, missing, outside every root,
 * a root itself, or not a namespace.
 */
export function checkNetnsPath(p: string, opts: NetnsPathOptions = {}): string {
  const field = opts.field ?? NETNS_PATH_FIELD;
  const roots = opts.roots ?? DEFAULT_NETNS_ROOTS;
  const show = JSON.stringify(p);
  if (typeof p !== 'string' || p === '' || !path.isAbsolute(p) || /[\0\n]/.test(p)) {
    throw new InvalidInputError(field, `${show} is not an absolute path`);
  }
  const underProc = (q: string): boolean => q === '/proc' || q.startsWith('/proc/');
  if (underProc(path.normalize(p))) {
    throw new InvalidInputError(
      field,
      `${show} is under /proc, which may name the node's own namespace; use a bind-mounted namespace under ${roots.join(' or ')}`,
    );
  }
  const real = realOrUndefined(p);
  if (real === undefined) {
    throw new InvalidInputError(field, `${show} does not exist`);
  }
  if (underProc(real)) {
    throw new InvalidInputError(field, `${show} resolves to ${real}, under /proc`);
  }
  const inside = roots.some((root) => {
    const r = realOrUndefined(root) ?? path.resolve(root);
    const rel = path.relative(r, real);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  });
  if (!inside) {
    throw new InvalidInputError(
      field,
      `${show}${real !== p ? ` (${real})` : ''} is outside the allowed namespace roots (${roots.join(', ')})`,
    );
  }
  if (!statSync(real).isFile()) {
    throw new InvalidInputError(field, `${show} is not a namespace file`);
  }
  if (opts.requireNsfs ?? true) {
    if (statfsSync(real).type !== NSFS_MAGIC) {
      throw new InvalidInputError(field, `${show} is not a network namespace (not an nsfs mount)`);
    }
  }
  return real;
}

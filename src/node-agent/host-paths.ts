// Host paths a sandbox names (hostPath rootfs, volumes) must stay under allow-listed roots once
// every symlink is resolved; nothing is created on the host before this check passes.
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import type { KataSandboxSpec } from '../crds/index.js';

export type HostPathReason = 'HostPathNotAllowed' | 'HostPathNotFound';

export class HostPathError extends Error {
  constructor(
    readonly reason: HostPathReason,
    /** The spec field, e.g. spec.volumes[0].hostPath.path. */
    readonly field: string,
    detail: string,
  ) {
    super(`${field}: ${detail}`);
    this.name = 'HostPathError';
  }
}

export interface HostPathRef {
  field: string;
  path: string;
}

export interface ResolvedHostPath extends HostPathRef {
  /** With every symlink resolved: what gets bind-mounted. */
  resolved: string;
}

/** Every host directory the spec shares into the VM, with its field path. */
export function hostPathsOf(spec: KataSandboxSpec): HostPathRef[] {
  const refs: HostPathRef[] = [];
  spec.containers.forEach((c, i) => {
    const p = c.rootfs?.hostPath?.path;
    if (p !== undefined)
      refs.push({ field: `spec.containers[${i}].rootfs.hostPath.path`, path: p });
  });
  (spec.volumes ?? []).forEach((v, i) =>
    refs.push({ field: `spec.volumes[${i}].hostPath.path`, path: v.hostPath.path }),
  );
  return refs;
}

/** Every block source the spec attaches to the VM (block rootfs images, devices), with its field path. */
export function blockPathsOf(spec: KataSandboxSpec): HostPathRef[] {
  const refs: HostPathRef[] = [];
  spec.containers.forEach((c, i) => {
    const p = c.rootfs?.block?.path;
    if (p !== undefined) refs.push({ field: `spec.containers[${i}].rootfs.block.path`, path: p });
    (c.devices ?? []).forEach((d, j) =>
      refs.push({ field: `spec.containers[${i}].devices[${j}].hostPath`, path: d.hostPath }),
    );
  });
  return refs;
}

/** True when `p` (already resolved) is `root` or lies below it. Pure. */
export function isUnderRoot(p: string, root: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** The allow-listed root `resolved` is under, if any. Pure. */
export function allowingRoot(resolved: string, roots: readonly string[]): string | undefined {
  return roots.find((r) => isUnderRoot(resolved, r));
}

export type RealPath = (p: string) => Promise<string>;

/**
 * Resolves each host path with its symlinks and checks it stays under an allow-listed root (the
 * roots resolved too). Throws HostPathError naming the first offending field.
 */
export async function checkHostPaths(
  refs: readonly HostPathRef[],
  roots: readonly string[],
  resolve: RealPath = realpath,
): Promise<ResolvedHostPath[]> {
  const realRoots: string[] = [];
  for (const r of roots) {
    realRoots.push(await resolve(r).catch(() => path.resolve(r)));
  }
  const out: ResolvedHostPath[] = [];
  for (const ref of refs) {
    const lexical = path.resolve(ref.path);
    if (!path.isAbsolute(ref.path)) {
      throw new HostPathError(
        'HostPathNotAllowed',
        ref.field,
        `${JSON.stringify(ref.path)} is not an absolute path`,
      );
    }
    if (!allowingRoot(lexical, roots)) {
      throw new HostPathError(
        'HostPathNotAllowed',
        ref.field,
        `${JSON.stringify(ref.path)} is not under the allowed roots (${roots.join(', ')})`,
      );
    }
    let resolved: string;
    try {
      resolved = await resolve(lexical);
    } catch (err) {
      throw new HostPathError(
        'HostPathNotFound',
        ref.field,
        `${JSON.stringify(ref.path)} cannot be resolved: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    if (!allowingRoot(resolved, realRoots)) {
      throw new HostPathError(
        'HostPathNotAllowed',
        ref.field,
        `${JSON.stringify(ref.path)} resolves to ${JSON.stringify(resolved)}, outside the allowed roots (${roots.join(', ')})`,
      );
    }
    out.push({ ...ref, resolved });
  }
  return out;
}

// Host paths a sandbox names (hostPath rootfs, volumes, block rootfs images, devices): which
// field names which path, and which allowed roots admit it as which kind of object. Pure; the
// paths are opened (once, beneath their root) by sandbox-host-paths.ts through kata-host-fs.
import path from 'node:path';
import type { KataSandboxSpec } from '../../crds/index.js';
import type { AllowedRoot } from '../host-fs/types.js';
import type { StepCondition } from '../../crds/index.js';

export type HostPathReason = 'HostPathNotAllowed' | 'HostPathNotFound' | 'InvalidBlockDevice';

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

  /** A device that is not a block device fails the container; any other path, the VM's setup. */
  get condition(): StepCondition {
    return this.reason === 'InvalidBlockDevice' ? 'ContainersReady' : 'VMReady';
  }
}

export interface HostPathRef {
  field: string;
  path: string;
}

/**
 * What a field may name: `dir` a directory under the host-path roots (hostPath rootfs, volumes);
 * `blockSource` an image file under the host-path roots or a block device under the device roots
 * (rootfs.block.path); `device` a block device under the device roots only (devices[].hostPath).
 */
export type HostPathKind = 'dir' | 'blockSource' | 'device';

export interface TypedHostPathRef extends HostPathRef {
  kind: HostPathKind;
}

export interface HostPathRoots {
  allowedHostPathRoots: readonly string[];
  allowedDeviceRoots: readonly string[];
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
export function blockPathsOf(spec: KataSandboxSpec): TypedHostPathRef[] {
  const refs: TypedHostPathRef[] = [];
  spec.containers.forEach((c, i) => {
    const p = c.rootfs?.block?.path;
    if (p !== undefined) {
      refs.push({ field: `spec.containers[${i}].rootfs.block.path`, path: p, kind: 'blockSource' });
    }
    (c.devices ?? []).forEach((d, j) =>
      refs.push({
        field: `spec.containers[${i}].devices[${j}].hostPath`,
        path: d.hostPath,
        kind: 'device',
      }),
    );
  });
  return refs;
}

/** Every host path of the spec with its kind: directories first, then block sources. */
export function typedHostPathsOf(spec: KataSandboxSpec): TypedHostPathRef[] {
  return [...hostPathsOf(spec).map((r) => ({ ...r, kind: 'dir' as const })), ...blockPathsOf(spec)];
}

/** The typed roots a kind of field may be opened beneath (row 8 of issue 14: devices only under the device roots). */
export function allowedRootsFor(kind: HostPathKind, roots: HostPathRoots): AllowedRoot[] {
  const hostRoots = (type: AllowedRoot['type']) =>
    roots.allowedHostPathRoots.map((root) => ({ root, type }));
  const deviceRoots = roots.allowedDeviceRoots.map((root) => ({ root, type: 'block' as const }));
  switch (kind) {
    case 'dir':
      return hostRoots('dir');
    case 'blockSource':
      return [...hostRoots('file'), ...deviceRoots];
    case 'device':
      return deviceRoots;
  }
}

/** True when `p` is `root` or lies below it, by path segment. Pure, lexical. */
export function isUnderRoot(p: string, root: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** The allow-listed root `p` is under, if any. Pure. */
export function allowingRoot(p: string, roots: readonly string[]): string | undefined {
  return roots.find((r) => isUnderRoot(p, r));
}

/**
 * The checks that need no file system: absolute, and lexically under a root that admits the
 * kind. Throws HostPathError naming the field. (What the path resolves to is for the helper.)
 */
export function checkLexically(ref: TypedHostPathRef, roots: HostPathRoots): void {
  if (!path.isAbsolute(ref.path)) {
    throw new HostPathError(
      'HostPathNotAllowed',
      ref.field,
      `${JSON.stringify(ref.path)} is not an absolute path`,
    );
  }
  const allowed = allowedRootsFor(ref.kind, roots).map((r) => r.root);
  if (!allowingRoot(path.resolve(ref.path), allowed)) {
    const where =
      ref.kind === 'device'
        ? `the allowed device roots (${allowed.join(', ') || 'none configured'})`
        : `the allowed roots (${allowed.join(', ')})`;
    throw new HostPathError(
      'HostPathNotAllowed',
      ref.field,
      `${JSON.stringify(ref.path)} is not under ${where}`,
    );
  }
}

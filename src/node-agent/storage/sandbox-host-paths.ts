// The early check of a sandbox's host paths (before anything is created on the host): each path
// opened once by kata-host-fs beneath a root that admits it as its kind of object. The result is
// what later steps hand back to the helper (root + path, re-opened beneath that root with the
// same type), never a resolved name to be looked up again.
import type { KataSandboxSpec } from '../../crds/index.js';
import { checkArgs } from '../host-fs/argv.js';
import { checkBeneath } from '../host-fs/operations.js';
import { runHostFs } from '../host-fs/run.js';
import type { AllowedRoot, CheckedHostPath, HostFs } from '../host-fs/types.js';
import {
  allowedRootsFor,
  checkLexically,
  HostPathError,
  typedHostPathsOf,
  type HostPathKind,
  type HostPathRoots,
  type TypedHostPathRef,
} from './host-paths.js';

export interface CheckedSandboxPath extends CheckedHostPath {
  kind: HostPathKind;
}

/**
 * Checks every host path of the spec (lexically first, all of them, then each opened beneath its
 * root); throws HostPathError naming the first offending field. Keyed by field.
 */
export async function checkSandboxHostPaths(
  fs: HostFs,
  spec: KataSandboxSpec,
  roots: HostPathRoots,
  signal?: AbortSignal,
): Promise<Map<string, CheckedSandboxPath>> {
  const refs = typedHostPathsOf(spec);
  for (const ref of refs) checkLexically(ref, roots);
  const out = new Map<string, CheckedSandboxPath>();
  for (const ref of refs) {
    out.set(ref.field, { ...(await checkOne(fs, ref, roots, signal)), kind: ref.kind });
  }
  return out;
}

async function checkOne(
  fs: HostFs,
  ref: TypedHostPathRef,
  roots: HostPathRoots,
  signal?: AbortSignal,
): Promise<CheckedHostPath> {
  try {
    return await checkBeneath(fs, ref, allowedRootsFor(ref.kind, roots), signal);
  } catch (err) {
    if (ref.kind !== 'dir' && err instanceof HostPathError && err.reason === 'HostPathNotAllowed') {
      throw await blockSourceError(fs, ref, roots, err, signal);
    }
    throw err;
  }
}

/**
 * Why a block source was refused, for its reason: something that is neither an image file nor a
 * block device wherever it lies is InvalidBlockDevice (as before the helper); a file or device
 * in the wrong kind of root, or a path leaving its root, stays HostPathNotAllowed. Only picks the
 * reason of a failure: nothing is used from this second look.
 */
async function blockSourceError(
  fs: HostFs,
  ref: TypedHostPathRef,
  roots: HostPathRoots,
  refused: HostPathError,
  signal?: AbortSignal,
): Promise<HostPathError> {
  // checkArgs passes each root once per type.
  const any: AllowedRoot[] = [...roots.allowedHostPathRoots, ...roots.allowedDeviceRoots].flatMap(
    (root) => [
      { root, type: 'file' as const },
      { root, type: 'block' as const },
    ],
  );
  const out = await runHostFs(fs, checkArgs(ref.path, any), signal).catch(() => undefined);
  if (out && !out.ok && out.failure.code === 'WRONG_TYPE') {
    return new HostPathError(
      'InvalidBlockDevice',
      ref.field,
      `${JSON.stringify(ref.path)} is neither an image file nor a block device`,
    );
  }
  if (out?.ok) {
    const what =
      (out.result as { type?: string }).type === 'block' ? 'a block device' : 'a regular file';
    const where =
      what === 'a block device'
        ? `block devices are only allowed under the device roots (${roots.allowedDeviceRoots.join(', ') || 'none configured'})`
        : `image files are only allowed under the host path roots (${roots.allowedHostPathRoots.join(', ')})`;
    return new HostPathError(
      'HostPathNotAllowed',
      ref.field,
      `${JSON.stringify(ref.path)} is ${what}; ${where}`,
    );
  }
  return refused;
}

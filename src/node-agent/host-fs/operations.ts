// The helper's operations for the node agent: check a tenant's host path, bind-mount one into a
// node-agent-owned directory, unmount one there. Each opens the path once, in the helper.
import { HostPathError } from '../storage/host-paths.js';
import { checkArgs, bindArgs, umountArgs } from './argv.js';
import { HostFsError, toHostPathError } from './errors.js';
import { runHostFs } from './run.js';
import type { AllowedRoot, BeneathBind, CheckedHostPath, HostFileType, HostFs } from './types.js';

/**
 * Opens ref.path beneath the most specific allowed root containing it. Throws HostPathError
 * naming ref.field: HostPathNotAllowed (not absolute, not under a root, escapes its root, wrong
 * type for that root) or HostPathNotFound; a HostFsError for failures that are not the path's.
 */
export async function checkBeneath(
  fs: HostFs,
  ref: { field: string; path: string },
  roots: readonly AllowedRoot[],
  signal?: AbortSignal,
): Promise<CheckedHostPath> {
  if (roots.length === 0) {
    throw new HostPathError(
      'HostPathNotAllowed',
      ref.field,
      `${JSON.stringify(ref.path)}: no host path roots are allowed on this node`,
    );
  }
  const out = await runHostFs(fs, checkArgs(ref.path, roots), signal);
  if (!out.ok) throw toHostPathError(ref.field, out.failure);
  const r = out.result as { root?: unknown; type?: unknown; resolved?: unknown };
  if (typeof r.root !== 'string' || !isType(r.type) || typeof r.resolved !== 'string') {
    throw new HostFsError(
      'EIO',
      `${fs.binary} check: unexpected result ${JSON.stringify(out.result)}`,
    );
  }
  return { field: ref.field, path: ref.path, root: r.root, type: r.type, resolved: r.resolved };
}

/** Bind-mounts m.source (opened beneath m.sourceRoot) at m.target beneath m.targetRoot. */
export async function bindBeneath(
  fs: HostFs,
  m: BeneathBind,
  signal?: AbortSignal,
): Promise<{ target: string; mountId: number }> {
  const out = await runHostFs(fs, bindArgs(m), signal);
  if (!out.ok) throw new HostFsError(out.failure.code, out.failure.message, out.failure.path);
  const r = out.result as { target?: unknown; mountId?: unknown };
  if (typeof r.target !== 'string' || typeof r.mountId !== 'number') {
    throw new HostFsError(
      'EIO',
      `${fs.binary} bind: unexpected result ${JSON.stringify(out.result)}`,
    );
  }
  return { target: r.target, mountId: r.mountId };
}

/** Unmounts the mount at target beneath targetRoot; false when nothing was mounted there. */
export async function unmountBeneath(
  fs: HostFs,
  targetRoot: string,
  target: string,
  opts: { detach?: boolean; signal?: AbortSignal } = {},
): Promise<boolean> {
  const out = await runHostFs(
    fs,
    umountArgs(targetRoot, target, opts.detach ?? false),
    opts.signal,
  );
  if (!out.ok) throw new HostFsError(out.failure.code, out.failure.message, out.failure.path);
  const r = out.result as { unmounted?: unknown };
  if (typeof r.unmounted !== 'boolean') {
    throw new HostFsError(
      'EIO',
      `${fs.binary} umount: unexpected result ${JSON.stringify(out.result)}`,
    );
  }
  return r.unmounted;
}

/**
 * Runs the helper once to check it starts and this kernel has every system call it needs
 * (openat2, open_tree, move_mount, mount_setattr: Linux 5.12); for the node agent's start-up.
 * Throws HostFsError (code KERNEL_TOO_OLD on an old kernel) otherwise.
 */
export async function probeHostFs(fs: HostFs, signal?: AbortSignal): Promise<{ kernel: string }> {
  const out = await runHostFs(fs, ['probe'], signal);
  if (!out.ok)
    throw new HostFsError(out.failure.code, `${fs.binary} probe: ${out.failure.message}`);
  const r = out.result as { kernel?: unknown };
  if (typeof r.kernel !== 'string') {
    throw new HostFsError(
      'EIO',
      `${fs.binary} probe: unexpected result ${JSON.stringify(out.result)}`,
    );
  }
  return { kernel: r.kernel };
}

function isType(t: unknown): t is HostFileType {
  return t === 'dir' || t === 'file' || t === 'block';
}

// The sandbox's 9p shared dir: <runDir>/shared/<uid>, holding each container's rootfs view at
// <share>/<container>/rootfs and each volume at <share>/_volumes/<name> as bind mounts. The guest
// can write in the share, so every mount here goes through kata-host-fs: the source opened once
// beneath its allowed root, the target walked beneath the share never following a symlink, the
// mount nosuid,nodev (+ro) from its first moment. Teardown unmounts each recorded target the same
// way, then whatever else mountinfo shows under the share, and removes the share only once
// nothing is mounted below it.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../observability/logger.js';
import { HostFsError } from '../host-fs/errors.js';
import { bindBeneath, unmountBeneath } from '../host-fs/operations.js';
import type { HostFs } from '../host-fs/types.js';
import { isUnderRoot } from './host-paths.js';
import { mountsUnder, readMountInfo } from './mountinfo.js';

/** Where a volume's directory lives inside the share (container names are DNS labels: no clash). */
export const VOLUMES_DIR = '_volumes';

export interface BindMount {
  /** The allowed root the source is opened beneath. */
  sourceRoot: string;
  source: string;
  /** Relative to the share. */
  target: string;
  readOnly: boolean;
}

export interface ShareInputs {
  /** Each hostPath rootfs's view (its `merged`, beneath the views root), per container name. */
  rootfs: ReadonlyArray<{ container: string; sourceRoot: string; source: string }>;
  /** Each volume's checked host directory and the root it was checked beneath. */
  volumes: ReadonlyArray<{ name: string; sourceRoot: string; source: string; readOnly: boolean }>;
}

/** Where a container's rootfs goes in the share (relative to it). */
export function rootfsTarget(container: string): string {
  return path.posix.join(container, 'rootfs');
}

/**
 * The bind mounts of one sandbox, in mount order. Pure. A rootfs is a per-sandbox view: it is
 * bound read-write (writes land in that sandbox's overlay upper dir, never in the host tree).
 */
export function planBindMounts(inputs: ShareInputs): BindMount[] {
  return [
    ...inputs.rootfs.map((r) => ({
      sourceRoot: r.sourceRoot,
      source: r.source,
      target: rootfsTarget(r.container),
      readOnly: false,
    })),
    ...inputs.volumes.map((v) => ({
      sourceRoot: v.sourceRoot,
      source: v.source,
      target: path.posix.join(VOLUMES_DIR, v.name),
      readOnly: v.readOnly,
    })),
  ];
}

/** The absolute target of a bind (what the state file records). */
export function shareTarget(shareDir: string, target: string): string {
  return path.join(shareDir, target);
}

/** Bind-mounts one directory into the share (idempotent: an existing mount there is kept). */
export async function bindIntoShare(
  fs: HostFs,
  shareDir: string,
  m: BindMount,
  signal?: AbortSignal,
): Promise<void> {
  await bindBeneath(
    fs,
    {
      sourceRoot: m.sourceRoot,
      source: m.source,
      type: 'dir',
      targetRoot: shareDir,
      target: m.target,
      readOnly: m.readOnly,
    },
    signal,
  );
}

/**
 * The recorded or found mount points as paths relative to the share, deepest first and each once,
 * the recorded ones (in reverse mount order) before the found ones. Pure.
 */
export function teardownPlan(
  shareDir: string,
  recorded: readonly string[],
  found: readonly string[],
): string[] {
  const rel = (p: string): string | undefined =>
    isUnderRoot(p, shareDir) && p !== shareDir ? path.relative(shareDir, p) : undefined;
  const out: string[] = [];
  for (const p of [...[...recorded].reverse(), ...found]) {
    const r = rel(p);
    if (r !== undefined && !out.includes(r)) out.push(r);
  }
  return out;
}

/** Unmounts everything at one target beneath the share (stacked mounts too; lazily when busy). */
async function unmountAll(fs: HostFs, shareDir: string, target: string, logger?: Logger) {
  for (let i = 0; i < 8; i++) {
    try {
      if (!(await unmountBeneath(fs, shareDir, target))) return;
    } catch (err) {
      if (!(err instanceof HostFsError) || err.code !== 'EBUSY') throw err;
      logger?.warn({ err, target }, 'umount busy; detaching lazily');
      if (!(await unmountBeneath(fs, shareDir, target, { detach: true }))) return;
    }
  }
}

/**
 * Unmounts everything under the share (the recorded targets first, in reverse, then anything else
 * mountinfo shows there — the guest may have renamed directories), then removes the share, only
 * once mountinfo shows no mount under it, so a failed unmount never deletes host data through a
 * bind mount.
 */
export async function teardownShare(
  fs: HostFs,
  shareDir: string,
  recorded: readonly string[],
  logger?: Logger,
): Promise<void> {
  for (const t of teardownPlan(shareDir, recorded, [])) {
    await unmountAll(fs, shareDir, t, logger).catch((err: unknown) =>
      logger?.warn({ err, target: t }, 'unmounting a recorded target failed'),
    );
  }
  for (let round = 0; round < 3; round++) {
    const found = mountsUnder(await readMountInfo(), shareDir).map((e) => e.mountPoint);
    if (found.length === 0) break;
    if (found.includes(shareDir)) throw new Error(`${shareDir} is itself a mount point`);
    for (const t of teardownPlan(shareDir, [], found)) {
      await unmountAll(fs, shareDir, t, logger).catch((err: unknown) =>
        logger?.warn({ err, target: t }, 'unmounting a leftover mount failed'),
      );
    }
  }
  const still = mountsUnder(await readMountInfo(), shareDir);
  if (still.length > 0) {
    throw new Error(
      `mounts remain under ${shareDir}: ${still.map((e) => e.mountPoint).join(', ')}`,
    );
  }
  await rm(shareDir, { recursive: true, force: true });
}

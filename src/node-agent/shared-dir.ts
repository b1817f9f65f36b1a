// The sandbox's 9p shared dir: <runDir>/shared/<uid>, holding each hostPath rootfs at
// <share>/<container>/rootfs and each volume at <share>/_volumes/<name> as bind mounts (made with
// mount(8) via argv, read-only where asked), checked against /proc/self/mountinfo so every step is
// idempotent, and torn down in reverse with a lazy-unmount fallback.
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../observability/logger.js';
import { mountsUnder, readMountInfo, type MountInfoEntry } from './mountinfo.js';

const execFileAsync = promisify(execFile);
const MOUNT_TIMEOUT_MS = 15_000;

/** Where a volume's directory lives inside the share (container names are DNS labels: no clash). */
export const VOLUMES_DIR = '_volumes';

export interface BindMount {
  source: string;
  /** Absolute, under the share. */
  target: string;
  readOnly: boolean;
}

export interface ShareInputs {
  shareDir: string;
  /** Resolved hostPath rootfs per container name. */
  rootfs: ReadonlyArray<{ container: string; source: string }>;
  volumes: ReadonlyArray<{ name: string; source: string; readOnly: boolean }>;
  /** Bind rootfs read-only (the host's tree is shared by every sandbox using it). */
  readOnlyRootfs: boolean;
}

/** The bind mounts of one sandbox, in mount order. Pure. */
export function planBindMounts(inputs: ShareInputs): BindMount[] {
  return [
    ...inputs.rootfs.map((r) => ({
      source: r.source,
      target: path.join(inputs.shareDir, r.container, 'rootfs'),
      readOnly: inputs.readOnlyRootfs,
    })),
    ...inputs.volumes.map((v) => ({
      source: v.source,
      target: path.join(inputs.shareDir, VOLUMES_DIR, v.name),
      readOnly: v.readOnly,
    })),
  ];
}

async function run(cmd: string, args: string[], signal?: AbortSignal): Promise<void> {
  try {
    await execFileAsync(cmd, args, {
      timeout: MOUNT_TIMEOUT_MS,
      ...(signal && { signal }),
    });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`);
  }
}

async function isMounted(target: string): Promise<MountInfoEntry | undefined> {
  return (await readMountInfo()).filter((e) => e.mountPoint === target).pop();
}

/** Bind-mounts one directory (idempotent: an existing mount at the target is kept). */
export async function bindMount(m: BindMount, signal?: AbortSignal): Promise<void> {
  await mkdir(m.target, { recursive: true, mode: 0o755 });
  let current = await isMounted(m.target);
  if (!current) {
    await run('mount', ['--bind', m.source, m.target], signal);
    current = await isMounted(m.target);
  }
  if (m.readOnly && !current?.options.includes('ro')) {
    await run('mount', ['-o', 'remount,bind,ro', m.target], signal);
  }
}

/** Unmounts one target (lazily when busy); true when nothing is mounted there any more. */
export async function unmount(target: string, logger?: Logger): Promise<void> {
  for (let i = 0; i < 8 && (await isMounted(target)); i++) {
    try {
      await run('umount', [target]);
    } catch (err) {
      logger?.warn({ err, target }, 'umount failed; detaching lazily');
      await run('umount', ['-l', target]);
    }
  }
  if (await isMounted(target)) throw new Error(`${target} is still mounted`);
}

/**
 * Unmounts everything under the share (the recorded targets first, in reverse, then anything
 * else found there), then removes the share — only once mountinfo shows no mount under it, so a
 * failed unmount can never lead to deleting host data through a bind mount.
 */
export async function teardownShare(
  shareDir: string,
  recorded: readonly string[],
  logger?: Logger,
): Promise<void> {
  for (const t of [...recorded].reverse()) await unmount(t, logger);
  const leftover = mountsUnder(await readMountInfo(), shareDir).map((e) => e.mountPoint);
  for (const t of leftover) await unmount(t, logger);
  const still = mountsUnder(await readMountInfo(), shareDir);
  if (still.length > 0) {
    throw new Error(
      `mounts remain under ${shareDir}: ${still.map((e) => e.mountPoint).join(', ')}`,
    );
  }
  await rm(shareDir, { recursive: true, force: true });
}

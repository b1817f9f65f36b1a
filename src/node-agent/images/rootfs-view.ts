// Each container's own view of a cached image (or of a hostPath rootfs directory): an overlay
// mount whose lower layer is the image's read-only rootfs (or the host directory, bound read-only
// at <dir>/lower from a handle kata-host-fs opened beneath its allowed root) and whose upper and
// work dirs belong to that sandbox and container, at <root>/<sandbox uid>/<container>/{upper,work,merged}. `merged` is what goes into the sandbox's
// 9p share. Writes land in `upper`; the cached image never changes. Mounts are made with mount(8)
// from argv, only below `root`, only over lower dirs below the allowed roots; preparing twice is a
// no-op and teardown unmounts (lazily as a last resort) before it deletes anything.
import { lstat, mkdir, readdir, realpath, rm, chmod, chown } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../observability/logger.js';
import { bindBeneath } from '../host-fs/operations.js';
import type { HostFs } from '../host-fs/types.js';
import { isUnderRoot } from '../storage/host-paths.js';
import { mountsUnder, readMountInfo } from '../storage/mountinfo.js';
import type { StepCondition } from '../../crds/index.js';
import { CommandError, runCommandOk } from '../../common/run-command.js';

export interface RootfsViewOptions {
  /** Absolute; owned by this module. Put it on a disk filesystem (not tmpfs, not overlay). */
  root: string;
  /** A lower dir must resolve below one of these (the image store's images dir). */
  lowerRoots: readonly string[];
  mountTimeoutMs?: number;
  logger?: Logger;
}

export interface RootfsView {
  /** The container's root filesystem: bind this into the share. */
  merged: string;
  upper: string;
  work: string;
  lower: string;
}

/** A sandbox uid usable as one path component and lease key. */
export const SAFE_UID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Characters overlayfs' option syntax gives a meaning to, or that mountinfo escapes. */
const UNSAFE_IN_OPTION = /[,:\\\s]/;

export class RootfsViewError extends Error {
  readonly condition: StepCondition = 'ContainersReady';
  readonly reason = 'RootfsViewFailed';
  constructor(message: string) {
    super(message);
    this.name = 'RootfsViewError';
  }
}

function mountArgv(lower: string, upper: string, work: string, merged: string): string[] {
  return [
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
    merged,
  ];
}

async function run(
  cmd: string,
  args: string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await runCommandOk([cmd, ...args], { timeoutMs, ...(signal && { signal }) });
  } catch (err) {
    const message =
      err instanceof CommandError ? err.message : `${cmd} ${args.join(' ')}: ${String(err)}`;
    throw new RootfsViewError(message);
  }
}

export class RootfsViews {
  readonly root: string;

  constructor(private readonly opts: RootfsViewOptions) {
    if (!path.isAbsolute(opts.root))
      throw new RootfsViewError(`view root ${opts.root} is not absolute`);
    this.root = path.resolve(opts.root);
    if (UNSAFE_IN_OPTION.test(this.root)) {
      throw new RootfsViewError(
        `view root ${this.root} has a character overlay options cannot carry`,
      );
    }
  }

  private get timeout(): number {
    return this.opts.mountTimeoutMs ?? 30_000;
  }

  /** The directories of one view; throws on an id that could leave the root. */
  paths(sandboxUid: string, container: string): Omit<RootfsView, 'lower'> & { dir: string } {
    if (!SAFE_UID.test(sandboxUid) || sandboxUid.includes('..')) {
      throw new RootfsViewError(`invalid sandbox uid ${JSON.stringify(sandboxUid)}`);
    }
    if (!DNS_LABEL.test(container)) {
      throw new RootfsViewError(`invalid container name ${JSON.stringify(container)}`);
    }
    const dir = path.join(this.root, sandboxUid, container);
    return {
      dir,
      upper: path.join(dir, 'upper'),
      work: path.join(dir, 'work'),
      merged: path.join(dir, 'merged'),
    };
  }

  /** Mounts the view (idempotent) and returns it. */
  async prepare(req: {
    sandboxUid: string;
    container: string;
    lowerDir: string;
    signal?: AbortSignal;
  }): Promise<RootfsView> {
    const p = this.paths(req.sandboxUid, req.container);
    const lower = await this.checkLower(req.lowerDir);
    return this.mountView(p, lower, req.signal);
  }

  /**
   * A hostPath rootfs's view: the host directory (opened beneath `sourceRoot` by the helper,
   * never resolved again) bound read-only, nosuid, nodev at <dir>/lower, then the overlay over it.
   * Every sandbox using the directory writes only to its own upper dir. Idempotent.
   */
  async prepareHostDir(req: {
    sandboxUid: string;
    container: string;
    hostFs: HostFs;
    sourceRoot: string;
    source: string;
    signal?: AbortSignal;
  }): Promise<RootfsView> {
    const p = this.paths(req.sandboxUid, req.container);
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await mkdir(path.dirname(p.dir), { recursive: true, mode: 0o700 });
    const lower = path.join(p.dir, 'lower');
    await bindBeneath(
      req.hostFs,
      {
        sourceRoot: req.sourceRoot,
        source: req.source,
        type: 'dir',
        targetRoot: this.root,
        target: path.relative(this.root, lower),
        readOnly: true,
      },
      req.signal,
    );
    return this.mountView(p, lower, req.signal);
  }

  private async mountView(
    p: ReturnType<RootfsViews['paths']>,
    lower: string,
    signal: AbortSignal | undefined,
  ): Promise<RootfsView> {
    const current = (await readMountInfo()).filter((e) => e.mountPoint === p.merged).pop();
    if (current) {
      const wanted = `lowerdir=${lower}`;
      if (current.fsType !== 'overlay' || !current.superOptions.includes(wanted)) {
        throw new RootfsViewError(
          `${p.merged} is already mounted (${current.fsType}, ${current.superOptions.join(',')}), not as this image's view`,
        );
      }
      return { merged: p.merged, upper: p.upper, work: p.work, lower };
    }
    await mkdir(path.dirname(p.dir), { recursive: true, mode: 0o700 });
    await mkdir(p.dir, { recursive: true, mode: 0o755 });
    await mkdir(p.work, { recursive: true, mode: 0o700 });
    await mkdir(p.merged, { recursive: true, mode: 0o755 });
    const fresh = await mkdir(p.upper, { recursive: true, mode: 0o755 });
    if (fresh !== undefined) {
      // The merged root takes the upper dir's owner and mode: give it the image root's.
      const st = await lstat(lower);
      await chown(p.upper, st.uid, st.gid);
      await chmod(p.upper, st.mode & 0o7777);
    }
    await run('mount', mountArgv(lower, p.upper, p.work, p.merged), this.timeout, signal);
    return { merged: p.merged, upper: p.upper, work: p.work, lower };
  }

  private async checkLower(lowerDir: string): Promise<string> {
    if (!path.isAbsolute(lowerDir))
      throw new RootfsViewError(`lower dir ${lowerDir} is not absolute`);
    let resolved: string;
    try {
      resolved = await realpath(lowerDir);
    } catch (err) {
      throw new RootfsViewError(
        `lower dir ${lowerDir}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
    const roots = await Promise.all(
      this.opts.lowerRoots.map((r) => realpath(r).catch(() => path.resolve(r))),
    );
    if (!roots.some((r) => isUnderRoot(resolved, r) && resolved !== r)) {
      throw new RootfsViewError(
        `lower dir ${resolved} is not under the image roots (${roots.join(', ')})`,
      );
    }
    if (UNSAFE_IN_OPTION.test(resolved)) {
      throw new RootfsViewError(
        `lower dir ${resolved} has a character overlay options cannot carry`,
      );
    }
    if (!(await lstat(resolved)).isDirectory()) {
      throw new RootfsViewError(`lower dir ${resolved} is not a directory`);
    }
    return resolved;
  }

  /**
   * Unmounts and deletes the views of a sandbox (one container's, or all). Idempotent. Nothing is
   * deleted while mountinfo still shows a mount below the sandbox's directory.
   */
  async teardown(sandboxUid: string, container?: string): Promise<void> {
    const sandboxDir = path.dirname(this.paths(sandboxUid, container ?? 'x').dir);
    const target = container !== undefined ? this.paths(sandboxUid, container).dir : sandboxDir;
    for (let attempt = 0; attempt < 5; attempt++) {
      const mounted = mountsUnder(await readMountInfo(), target);
      if (mounted.length === 0) break;
      for (const m of mounted) {
        try {
          await run('umount', [m.mountPoint], this.timeout);
        } catch (err) {
          this.opts.logger?.warn(
            { err, mountPoint: m.mountPoint },
            'umount failed; detaching lazily',
          );
          await run('umount', ['-l', m.mountPoint], this.timeout).catch(() => {});
        }
      }
    }
    const still = mountsUnder(await readMountInfo(), target);
    if (still.length > 0) {
      throw new RootfsViewError(
        `mounts remain under ${target}: ${still.map((m) => m.mountPoint).join(', ')}`,
      );
    }
    await rm(target, { recursive: true, force: true });
    if (container !== undefined) {
      const left = await readdir(sandboxDir).catch(() => []);
      if (left.length === 0) await rm(sandboxDir, { recursive: true, force: true });
    }
  }

  /** Sandbox uids that have views on disk (for cleanup after a restart). */
  async sandboxes(): Promise<string[]> {
    return (await readdir(this.root).catch(() => [])).filter((n) => SAFE_UID.test(n)).sort();
  }
}

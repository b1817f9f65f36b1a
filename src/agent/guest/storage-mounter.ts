// Mounts the storages of the sandbox and its containers (9p share, virtio-blk rootfs, local dirs,
// tmpfs and Kata 1.x's ephemeral tmpfs) with busybox mount/umount (argv, never a shell), and
// remembers what it mounted and for whom, so a mount point shared by several owners (as Kata 1.x
// counts its sandbox storages) is unmounted when its last owner goes, newest first.
import { mkdir } from 'node:fs/promises';
import { runCommandOk, type CommandRunner } from '../../common/run-command.js';
import type { Storage } from '../../generated/agent.js';
import type { BlockDevices } from './block-devices.js';
import { AGENT_DIR, DEVICE_DIR, guardPath } from './path-guard.js';
import { invalidArgument } from './status-error.js';

export const STORAGE_DRIVERS = ['9p', 'blk', 'local', 'ephemeral'] as const;
const BLOCK_DRIVERS = new Set(['blk', 'virtio-blk']);
const DEFAULT_9P_OPTIONS = ['trans=virtio', 'version=9p2000.L', 'nodev'];
const MOUNT_TIMEOUT_MS = 30_000;
const FSTYPE_RE = /^[a-z0-9_.]{1,32}$/;
const TAG_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const OPTION_RE = /^[A-Za-z0-9_.=:/+-]{1,256}$/;
/** Kata 1.x's runtime sends a tmpfs as driver "ephemeral" (the sandbox's /dev/shm, emptyDir Memory). */
const EPHEMERAL = 'ephemeral';

/**
 * The storage's mount options one by one: Kata 1.x's runtime joins several in one entry
 * ("trans=virtio,version=9p2000.L,cache=mmap"), its agent passes each entry on as it is.
 */
export function mountOptions(s: Storage): string[] {
  return s.options.flatMap((o) => o.split(','));
}

export interface MountPlan {
  /** argv for `mount`, or undefined for a storage that is a plain directory. */
  argv?: string[];
  mountPoint: string;
  /** For blk storages: the serial to find the drive by, and the source hint. */
  serial?: string;
}

/** Checks a storage's fields; messages name the field (e.g. storages[0].mount_point). */
export function validateStorage(s: Storage, field: string): void {
  guardPath(`${field}.mount_point`, s.mountPoint, AGENT_DIR);
  const driver = s.driver;
  if (driver !== '9p' && driver !== 'local' && driver !== EPHEMERAL && !BLOCK_DRIVERS.has(driver)) {
    throw invalidArgument(
      `${field}.driver ${JSON.stringify(driver)} is not supported (want one of ${STORAGE_DRIVERS.join(', ')})`,
    );
  }
  if (s.fstype !== '' && !FSTYPE_RE.test(s.fstype)) {
    throw invalidArgument(`${field}.fstype ${JSON.stringify(s.fstype)} is not a filesystem type`);
  }
  s.options.forEach((entry, i) => {
    for (const o of entry.split(',')) {
      if (!OPTION_RE.test(o)) {
        const part = entry === o ? '' : ` (in ${JSON.stringify(entry)})`;
        throw invalidArgument(
          `${field}.options[${i}] ${JSON.stringify(o)}${part} is not a mount option`,
        );
      }
    }
  });
  if (driver === EPHEMERAL) {
    if (s.fstype !== '' && s.fstype !== 'tmpfs') {
      throw invalidArgument(
        `${field}.fstype ${JSON.stringify(s.fstype)}: an ephemeral storage is a tmpfs`,
      );
    }
    if (s.source !== '' && !TAG_RE.test(s.source)) {
      throw invalidArgument(`${field}.source ${JSON.stringify(s.source)} is not a tmpfs name`);
    }
  }
  if (driver === '9p' && !TAG_RE.test(s.source)) {
    throw invalidArgument(`${field}.source ${JSON.stringify(s.source)} is not a 9p mount tag`);
  }
  if (BLOCK_DRIVERS.has(driver)) {
    if (blockSerial(s) === undefined) {
      throw invalidArgument(`${field}.driver_options has no serial=<id>`);
    }
    if (!s.fstype) throw invalidArgument(`${field}.fstype is empty`);
    if (s.source) guardPath(`${field}.source`, s.source, DEVICE_DIR);
  }
}

export function blockSerial(s: Storage): string | undefined {
  const opt = s.driverOptions.find((o) => o.startsWith('serial='));
  const serial = opt?.slice('serial='.length);
  return serial && TAG_RE.test(serial) ? serial : undefined;
}

/** The mount argv for a (validated) storage; `device` is the resolved drive for blk. */
export function mountArgv(s: Storage, device?: string): string[] | undefined {
  const withOptions = (fstype: string, options: string[], source: string): string[] => [
    '-t',
    fstype,
    ...(options.length > 0 ? ['-o', options.join(',')] : []),
    source,
    s.mountPoint,
  ];
  if (s.driver === '9p') {
    const options = s.options.length > 0 ? mountOptions(s) : [...DEFAULT_9P_OPTIONS];
    if (!options.some((o) => o.startsWith('trans='))) options.unshift('trans=virtio');
    return withOptions('9p', options, s.source);
  }
  if (BLOCK_DRIVERS.has(s.driver)) {
    const options = mountOptions(s);
    // Clones of one xfs image share a UUID; without nouuid the second mount fails.
    if (s.fstype === 'xfs' && !options.includes('nouuid')) options.push('nouuid');
    return withOptions(s.fstype, options, device ?? s.source);
  }
  // ephemeral: a tmpfs, named by its source ("shm") as Kata 1.x mounts it.
  if (s.driver === EPHEMERAL) return withOptions('tmpfs', mountOptions(s), s.source || 'tmpfs');
  // local: an emptyDir-like directory, or a tmpfs when asked for one.
  if (s.fstype === 'tmpfs') return withOptions('tmpfs', mountOptions(s), s.source || 'tmpfs');
  return undefined;
}

interface Mounted {
  /** Who uses the mount point; it is unmounted when the last one lets go. */
  owners: Set<string>;
  mountPoint: string;
  /** Nothing to unmount (a plain directory storage). */
  directory: boolean;
}

export interface StorageMounterOptions {
  run?: CommandRunner;
  blockDevices: BlockDevices;
  mountBin?: string;
  umountBin?: string;
  /** Creates a mount point; tests replace it so nothing is made under the real /run. */
  makeDir?: (dir: string) => Promise<unknown>;
}

export class StorageMounter {
  private readonly mounted: Mounted[] = [];
  private readonly run: CommandRunner;

  constructor(private readonly opts: StorageMounterOptions) {
    this.run = opts.run ?? runCommandOk;
  }

  /** Mounts one validated storage for `owner` (a container id or "sandbox"). */
  async mount(s: Storage, owner: string): Promise<void> {
    const existing = this.mounted.find((m) => m.mountPoint === s.mountPoint);
    if (existing) {
      existing.owners.add(owner);
      return;
    }
    await (this.opts.makeDir ?? ((d) => mkdir(d, { recursive: true, mode: 0o755 })))(s.mountPoint);
    let device: string | undefined;
    if (BLOCK_DRIVERS.has(s.driver)) {
      device = (await this.opts.blockDevices.find(blockSerial(s)!, s.source || undefined)).devPath;
    }
    const argv = mountArgv(s, device);
    if (argv) {
      await this.run([this.opts.mountBin ?? 'mount', ...argv], { timeoutMs: MOUNT_TIMEOUT_MS });
    }
    this.mounted.push({ owners: new Set([owner]), mountPoint: s.mountPoint, directory: !argv });
  }

  mountsOf(owner: string): string[] {
    return this.mounted.filter((m) => !m.directory && m.owners.has(owner)).map((m) => m.mountPoint);
  }

  /**
   * Lets go of what `owner` used; unmounts, newest first, what nobody else uses. Returns the
   * errors, having tried all.
   */
  async unmountOwner(owner: string): Promise<Error[]> {
    for (const m of this.mounted) m.owners.delete(owner);
    return this.unmountWhere((m) => m.owners.size === 0);
  }

  async unmountAll(): Promise<Error[]> {
    return this.unmountWhere(() => true);
  }

  private async unmountWhere(pred: (m: Mounted) => boolean): Promise<Error[]> {
    const errors: Error[] = [];
    for (let i = this.mounted.length - 1; i >= 0; i--) {
      const m = this.mounted[i]!;
      if (!pred(m)) continue;
      if (m.directory) {
        this.mounted.splice(i, 1);
        continue;
      }
      const umount = this.opts.umountBin ?? 'umount';
      try {
        await this.run([umount, m.mountPoint], { timeoutMs: MOUNT_TIMEOUT_MS });
      } catch (err) {
        // Still busy (a process that outlived its container): detach it so the sandbox can end.
        try {
          await this.run([umount, '-l', m.mountPoint], { timeoutMs: MOUNT_TIMEOUT_MS });
        } catch {
          errors.push(err as Error);
          continue;
        }
      }
      this.mounted.splice(i, 1);
    }
    return errors;
  }
}

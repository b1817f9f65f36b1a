// Where the guest image that `make guest` (guest/build.sh) built lives:
//   ${XDG_CACHE_HOME:-~/.cache}/kata-sandbox-operator/guest/current/{vmlinux,vmlinuz,initrd,rootfs.erofs,manifest.json}
// and, besides the default kernel (made for the job), Debian's stock one in debian/{vmlinux,vmlinuz}.
// The default kernel boots from rootfs.erofs (read-only, virtio-blk), the stock one from the initrd.
// `current` is a symlink to the newest <input-hash>/ directory; the paths returned here are the
// resolved hash directory, so a rebuild while a VM boots does not change what that VM reads.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { StepCondition } from '../../crds/index.js';
import type { RootDiskConfig } from './qemu-args.js';

export interface GuestImagePaths {
  /** The image directory (symlinks resolved). */
  dir: string;
  /**
   * The kernel to boot: the uncompressed ELF `vmlinux` (QEMU boots it through its PVH entry,
   * skipping the bzImage's in-guest decompression, ~4 s under TCG) when the image has one, else
   * the bzImage `vmlinuz`.
   */
  kernel: string;
  /** The bzImage, always present. */
  vmlinuz: string;
  /**
   * The kernels this image offers by `spec.vm.kernel` name: `default` (= `kernel`) always,
   * `debian` (the stock kernel, `debian/`) when the image has it.
   */
  kernels: Readonly<Record<string, string>>;
  initrd: string;
  /** The default kernel's read-only root image (rootfs.erofs), when the image has one. */
  rootDisk?: string;
  manifest: string;
}

/** How a kernel finds its root filesystem: in RAM from the initrd, or on the read-only drive. */
export type GuestRoot = { initrd: string } | { rootDisk: RootDiskConfig };

/**
 * The root for the kernel named `kernelName`: the default kernel (everything built in) boots the
 * image's erofs root when there is one; the stock kernel needs its modules, so the initrd. Pure.
 */
export function guestRootFor(image: GuestImagePaths, kernelName: string): GuestRoot {
  if (kernelName === 'default' && image.rootDisk !== undefined) {
    return { rootDisk: { path: image.rootDisk, fsType: 'erofs' } };
  }
  return { initrd: image.initrd };
}

/** The parts of manifest.json that code reads (guest/build.sh writes more). */
export interface GuestImageManifest {
  hash: string;
  kernelVersion: string;
  nodeVersion: string;
  agentPath: string;
  initrdCompression: string;
  /** Kernel parameters the image is meant to boot with (console=ttyS0 quiet panic=-1 ...). */
  cmdline: string;
  sizes: Record<string, number>;
}

export interface ResolveGuestImageOptions {
  /** An image directory to use instead of the cache's `current` (e.g. from a flag or config). */
  imageDir?: string;
  /** Environment to read XDG_CACHE_HOME from (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Home directory when XDG_CACHE_HOME is unset (default os.homedir()). */
  homeDir?: string;
  /** Boot the bzImage even when a vmlinux is present. */
  preferBzImage?: boolean;
}

export class GuestImageMissingError extends Error {
  readonly condition: StepCondition = 'VMReady';
  readonly reason = 'GuestImageMissing';
  constructor(
    readonly missingPath: string,
    detail: string,
  ) {
    super(`guest image: ${missingPath} ${detail} (build it with \`make guest\`)`);
    this.name = 'GuestImageMissingError';
  }
}

/** `${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator/guest` — the builder's cache root. */
export function guestImageCacheRoot(
  env: Readonly<Record<string, string | undefined>> = process.env,
  homeDir: string = os.homedir(),
): string {
  const xdg = env['XDG_CACHE_HOME'];
  // The XDG spec: a relative XDG_CACHE_HOME is invalid and must be ignored.
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(homeDir, '.cache');
  return path.join(base, 'kata-sandbox-operator', 'guest');
}

/** Absolute paths of the current guest image; throws GuestImageMissingError naming what is missing. */
export function resolveGuestImage(options: ResolveGuestImageOptions = {}): GuestImagePaths {
  const wanted = options.imageDir
    ? path.resolve(options.imageDir)
    : path.join(guestImageCacheRoot(options.env, options.homeDir), 'current');
  if (!existsSync(wanted)) {
    throw new GuestImageMissingError(wanted, 'does not exist');
  }
  const dir = realpathSync(wanted);
  const file = (name: string): string => {
    const p = path.join(dir, name);
    if (!existsSync(p)) throw new GuestImageMissingError(p, 'is missing');
    return p;
  };
  const vmlinuz = file('vmlinuz');
  const initrd = file('initrd');
  const manifest = file('manifest.json');
  const bootable = (d: string): string | undefined => {
    const vmlinux = path.join(d, 'vmlinux');
    if (!options.preferBzImage && existsSync(vmlinux)) return vmlinux;
    const bz = path.join(d, 'vmlinuz');
    return existsSync(bz) ? bz : undefined;
  };
  const kernel = bootable(dir) ?? vmlinuz;
  const kernels: Record<string, string> = { default: kernel };
  const debian = bootable(path.join(dir, 'debian'));
  if (debian) kernels['debian'] = debian;
  const rootDisk = path.join(dir, 'rootfs.erofs');
  return {
    dir,
    kernel,
    vmlinuz,
    kernels,
    initrd,
    ...(existsSync(rootDisk) && { rootDisk }),
    manifest,
  };
}

/** Reads and checks an image's manifest.json. */
export function readGuestImageManifest(manifestPath: string): GuestImageManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (err) {
    throw new GuestImageMissingError(manifestPath, `is unreadable: ${(err as Error).message}`);
  }
  const m = raw as Partial<GuestImageManifest> | null;
  for (const key of ['hash', 'kernelVersion', 'cmdline'] as const) {
    if (!m || typeof m[key] !== 'string') {
      throw new GuestImageMissingError(manifestPath, `has no string "${key}"`);
    }
  }
  return m as GuestImageManifest;
}

import path from 'node:path';
import type { Device, Storage } from '../generated/agent.js';
import type { Mount } from '../generated/oci.js';
import { InvalidInputError } from './errors.js';
import { SHARED_MOUNT_TAG } from './contract.js';

/** Where the 9p share appears in the guest; every container's directory lives under it. */
export const GUEST_SHARED_DIR = '/run/kata-containers/shared/containers/';
export { SHARED_MOUNT_TAG };
/** The sandbox's resolv.conf as containers see it (bound read-only at their /etc/resolv.conf). */
export const CONTAINER_RESOLV_CONF = '/run/kata-containers/sandbox/resolv.conf';

export function sharedDirStorage(): Storage {
  return {
    driver: '9p',
    driverOptions: [],
    source: SHARED_MOUNT_TAG,
    fstype: '9p',
    options: ['trans=virtio', 'version=9p2000.L', 'nodev'],
    mountPoint: GUEST_SHARED_DIR,
  };
}

/** The guest path of a container's directory (the block rootfs mount point, or its 9p dir). */
export function containerGuestDir(containerId: string): string {
  return path.posix.join(GUEST_SHARED_DIR, containerId);
}

export function containerRootPath(containerId: string): string {
  return path.posix.join(containerGuestDir(containerId), 'rootfs');
}

/**
 * The name the guest kernel gives the index-th virtio-blk disk: vda…vdz, vdaa…vdzz, vdaaa…
 * Only a hint: the guest finds a drive by its serial, since hot-plug and other disks shift names.
 */
export function blockDriveName(index: number): string {
  if (!Number.isInteger(index) || index < 0) {
    throw new InvalidInputError('blockIndex', `${index} is not a non-negative integer`);
  }
  let n = index;
  let suffix = '';
  do {
    suffix = String.fromCharCode(97 + (n % 26)) + suffix;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return `vd${suffix}`;
}

export type BlockFsType = 'ext4' | 'xfs';

/** A container rootfs on a virtio-blk drive whose serial is the container id. */
export function blockRootfsStorage(
  containerId: string,
  driveIndex: number,
  fsType: BlockFsType,
  readOnly = false,
): Storage {
  const options = fsType === 'xfs' ? ['nouuid'] : [];
  if (readOnly) options.push('ro');
  return {
    driver: 'blk',
    driverOptions: [`serial=${containerId}`],
    source: `/dev/${blockDriveName(driveIndex)}`,
    fstype: fsType,
    options,
    mountPoint: containerGuestDir(containerId),
  };
}

/** A host block device given to a container: found in the guest by `serial`, shown at containerPath. */
export function blockDevice(serial: string, driveIndex: number, containerPath: string): Device {
  if (!path.posix.isAbsolute(containerPath)) {
    throw new InvalidInputError(
      'devices.containerPath',
      `${JSON.stringify(containerPath)} is not absolute`,
    );
  }
  return {
    id: serial,
    type: 'blk',
    vmPath: `/dev/${blockDriveName(driveIndex)}`,
    containerPath,
    options: [],
  };
}

/** Points bind mounts at the guest paths of what the host put into the share. */
export function replaceMountSources(
  mounts: Mount[],
  hostToGuest: ReadonlyMap<string, string>,
): Mount[] {
  return mounts.map((m) => {
    const guest = hostToGuest.get(m.source);
    return guest === undefined ? m : { ...m, source: guest };
  });
}

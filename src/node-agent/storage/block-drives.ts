// The virtio-blk drives of a sandbox: one per block rootfs container and one per host device a
// container gets. Each drive's virtio serial is virtioBlkSerial(id) (the container id, or a
// device id made here); the guest finds the drive by it, the predicted vd* name going along only
// as a hint. Read-only stays read-only twice: `readonly=on` in QEMU and `ro` in the guest mount.
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import path from 'node:path';
import { virtioBlkSerial } from '../../agent/block-serial.js';
import { InvalidInputError } from '../../agent/errors.js';
import {
  blockDevice,
  blockDriveName,
  blockRootfsStorage,
  type BlockFsType,
} from '../../agent/storage.js';
import type { Device, Storage } from '../../generated/agent.js';
import type { FdOpen } from '../host-fs/types.js';
import type { DriveConfig } from '../hypervisor/qemu-args.js';

/** The first descriptor a drive is handed to QEMU at (the helper places them; 0–2 are stdio). */
export const FIRST_DRIVE_FD = 3;

/** A checked host path: re-opened by the helper beneath `root`, as `type`, for QEMU. */
export interface DriveSource {
  root: string;
  type: 'file' | 'block';
}

export interface BlockRootfsInput {
  containerId: string;
  /** Image file or block device on the node (rootfs.block.path). */
  path: string;
  fsType?: BlockFsType;
  readOnly?: boolean;
  /** For error messages, e.g. spec.containers[0].rootfs.block.path. */
  field?: string;
  /** Given: QEMU gets the drive as a descriptor the helper opens beneath the root (no path). */
  source?: DriveSource;
}

export interface BlockDeviceInput {
  containerId: string;
  /** Block device (e.g. a loop device) or image file on the node. */
  hostPath: string;
  containerPath: string;
  readOnly?: boolean;
  field?: string;
  source?: DriveSource;
}

export interface PlannedDrive {
  /** Index among the VM's virtio-blk drives (cold-plug order). */
  index: number;
  /** The id the serial is derived from (container id, or device id). */
  id: string;
  serial: string;
  /** The predicted guest name, a hint only. */
  nameHint: string;
  drive: DriveConfig;
  kind: 'rootfs' | 'device';
  containerId: string;
  /** The spec field the drive came from. */
  field: string;
}

export interface BlockDrivePlan {
  /** For VmConfig.drives, in index order. */
  drives: DriveConfig[];
  planned: PlannedDrive[];
  /** Per container: the storage its CreateContainer carries (the block rootfs). */
  rootfsStorages: Map<string, Storage>;
  /** Per container: the devices its CreateContainer carries. */
  devices: Map<string, Device[]>;
  /** What the helper opens for QEMU (the drives with a source), at each drive's descriptor. */
  opens: FdOpen[];
}

export interface PlanOptions {
  /** Drives already attached before these (their indexes come first). Default 0. */
  firstIndex?: number;
  /** QEMU cache mode; `none` (O_DIRECT) fails on tmpfs. Default none. */
  cache?: DriveConfig['cache'];
  /** Checks each path is a regular file or a block device (default true). */
  checkPaths?: boolean;
}

/** The id a container device's drive is known by: short (≤ 20), so the serial is the id itself. */
export function deviceDriveId(containerId: string, containerPath: string): string {
  const h = createHash('sha256').update(`${containerId}\0${containerPath}`).digest('hex');
  return `dev-${h.slice(0, 16)}`;
}

/** A block source must be an existing regular file (image) or a block device. */
export function checkBlockSource(p: string, field: string): void {
  if (!path.isAbsolute(p))
    throw new InvalidInputError(field, `${JSON.stringify(p)} is not absolute`);
  let st;
  try {
    st = statSync(p);
  } catch {
    throw new InvalidInputError(field, `${JSON.stringify(p)} does not exist`);
  }
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new InvalidInputError(
      field,
      `${JSON.stringify(p)} is neither an image file nor a block device`,
    );
  }
}

/** Plans the drives: rootfs drives first (in the given order), then devices. Pure apart from stat. */
export function planBlockDrives(
  rootfs: readonly BlockRootfsInput[],
  devices: readonly BlockDeviceInput[],
  opts: PlanOptions = {},
): BlockDrivePlan {
  const first = opts.firstIndex ?? 0;
  const check = opts.checkPaths ?? true;
  const planned: PlannedDrive[] = [];
  const rootfsStorages = new Map<string, Storage>();
  const deviceMap = new Map<string, Device[]>();
  const serials = new Map<string, string>();
  const opens: FdOpen[] = [];

  const add = (
    id: string,
    file: string,
    readOnly: boolean,
    kind: PlannedDrive['kind'],
    containerId: string,
    field: string,
    source: DriveSource | undefined,
  ): PlannedDrive => {
    // A drive with a source was checked beneath its root by the helper (and is re-opened there).
    if (check && !source) checkBlockSource(file, field);
    const serial = virtioBlkSerial(id);
    const clash = serials.get(serial);
    if (clash !== undefined) {
      throw new InvalidInputError(
        field,
        `drive id ${JSON.stringify(id)} clashes with ${JSON.stringify(clash)}`,
      );
    }
    serials.set(serial, id);
    const index = first + planned.length;
    const drive: DriveConfig = {
      path: file,
      serialId: id,
      readOnly,
      format: 'raw',
      ...(opts.cache !== undefined && { cache: opts.cache }),
      ...(source && { fd: { fd: FIRST_DRIVE_FD + index, set: index, type: source.type } }),
    };
    if (source) {
      opens.push({
        fd: FIRST_DRIVE_FD + index,
        root: source.root,
        path: file,
        type: source.type,
        readOnly,
      });
    }
    const p: PlannedDrive = {
      index,
      id,
      serial,
      nameHint: blockDriveName(index),
      drive,
      kind,
      containerId,
      field,
    };
    planned.push(p);
    return p;
  };

  rootfs.forEach((r, i) => {
    const field = r.field ?? `rootfs[${i}].path`;
    if (rootfsStorages.has(r.containerId)) {
      throw new InvalidInputError(
        field,
        `container ${JSON.stringify(r.containerId)} has two block rootfs`,
      );
    }
    const p = add(
      r.containerId,
      r.path,
      r.readOnly ?? false,
      'rootfs',
      r.containerId,
      field,
      r.source,
    );
    rootfsStorages.set(
      r.containerId,
      blockRootfsStorage(r.containerId, p.index, r.fsType ?? 'ext4', r.readOnly ?? false),
    );
  });
  devices.forEach((d, i) => {
    const field = d.field ?? `devices[${i}].hostPath`;
    const id = deviceDriveId(d.containerId, d.containerPath);
    const p = add(id, d.hostPath, d.readOnly ?? false, 'device', d.containerId, field, d.source);
    const list = deviceMap.get(d.containerId) ?? [];
    list.push(blockDevice(id, p.index, d.containerPath));
    deviceMap.set(d.containerId, list);
  });
  return {
    drives: planned.map((p) => p.drive),
    planned,
    rootfsStorages,
    devices: deviceMap,
    opens,
  };
}

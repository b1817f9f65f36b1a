// Devices handed to a container: a virtio-blk drive (found by its serial) appears at the
// container path. crun creates the node from linux.devices; when the spec carries a device cgroup
// policy, an allow rule for the drive is appended (with no policy, crun allows it already).
import type { Device } from '../../generated/agent.js';
import type { BlockDrive } from './block-devices.js';
import type { OciConfig } from './oci-config.js';
import { DEVICE_DIR, guardContainerPath, guardPath } from './path-guard.js';
import { invalidArgument } from './status-error.js';

export const DEVICE_HANDLERS = ['blk'];
const SERIAL_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export function validateDevice(d: Device, field: string): void {
  if (d.type !== 'blk') {
    throw invalidArgument(`${field}.type ${JSON.stringify(d.type)} is not supported (want blk)`);
  }
  if (!SERIAL_RE.test(d.id)) {
    throw invalidArgument(`${field}.id ${JSON.stringify(d.id)} is not a virtio serial`);
  }
  if (d.vmPath) guardPath(`${field}.vm_path`, d.vmPath, DEVICE_DIR);
  guardContainerPath(`${field}.container_path`, d.containerPath);
}

export interface ResolvedDevice {
  containerPath: string;
  drive: BlockDrive;
}

/** Adds the resolved devices to a config.json (pure; returns a new config). */
export function withDevices(config: OciConfig, devices: readonly ResolvedDevice[]): OciConfig {
  if (devices.length === 0) return config;
  const others = (config.linux.devices ?? []).filter(
    (d) => !devices.some((r) => r.containerPath === d.path),
  );
  const added = devices.map((r) => ({
    path: r.containerPath,
    type: 'b',
    major: r.drive.major,
    minor: r.drive.minor,
    fileMode: 0o660,
    uid: 0,
    gid: 0,
  }));
  const linux = { ...config.linux, devices: [...others, ...added] };
  const rules = config.linux.resources?.devices;
  if (rules) {
    linux.resources = {
      ...config.linux.resources,
      devices: [
        ...rules,
        ...devices.map((r) => ({
          allow: true,
          type: 'b',
          major: r.drive.major,
          minor: r.drive.minor,
          access: 'rwm',
        })),
      ],
    };
  }
  return { ...config, linux };
}

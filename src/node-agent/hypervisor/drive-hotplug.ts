// Block drives added to a running VM (a warm one): the same drives a cold boot gives QEMU on its
// command line (qemu-args.ts), as QMP commands. The descriptors reach QEMU through kata-host-fs
// (`exec` opens each beneath its root, `qmp-fds` passes it with add-fd), so here only the
// commands are built. Pure.
import { virtioBlkSerial } from './block-serial.js';
import type { DriveConfig } from './qemu-args.js';

export type QmpCommand = { execute: string; arguments: Record<string, unknown> };

/** blockdev-add and device_add of drive `index` (ids drive-N, blk-N as on the command line). */
export function driveHotplugCommands(d: DriveConfig, index: number): QmpCommand[] {
  if (!d.fd) throw new Error(`drive ${index} has no descriptor: only opened drives are plugged`);
  const direct = (d.cache ?? 'none') === 'none';
  const cache = { direct, 'no-flush': d.cache === 'unsafe' };
  const readOnly = d.readOnly ?? false;
  return [
    {
      execute: 'blockdev-add',
      arguments: {
        'node-name': `drive-${index}`,
        driver: d.format ?? 'raw',
        'read-only': readOnly,
        cache,
        file: {
          driver: d.fd.type === 'block' ? 'host_device' : 'file',
          filename: `/dev/fdset/${d.fd.set}`,
          'read-only': readOnly,
          'auto-read-only': false,
          cache,
        },
      },
    },
    {
      execute: 'device_add',
      arguments: {
        driver: 'virtio-blk-pci',
        drive: `drive-${index}`,
        id: `blk-${index}`,
        serial: virtioBlkSerial(d.serialId),
      },
    },
  ];
}

/** The qmp-fds arguments (after the helper binary) that plug every drive. Pure. */
export function qmpFdsArgs(
  qmpSocket: string,
  drives: readonly DriveConfig[],
  timeoutMs: number,
): string[] {
  return [
    'qmp-fds',
    `--socket=${qmpSocket}`,
    `--timeout-ms=${timeoutMs}`,
    ...drives.map((d, i) => {
      if (!d.fd) throw new Error(`drive ${i} has no descriptor`);
      return `--fdset=${d.fd.fd}:${d.fd.set}`;
    }),
    ...drives.flatMap((d, i) =>
      driveHotplugCommands(d, i).map((c) => `--command=${JSON.stringify(c)}`),
    ),
  ];
}

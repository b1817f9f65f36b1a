import { describe, expect, it } from '@jest/globals';
import {
  driveHotplugCommands,
  qmpFdsArgs,
} from '../../../src/node-agent/hypervisor/drive-hotplug.js';
import { buildQemuArgs, type DriveConfig } from '../../../src/node-agent/hypervisor/qemu-args.js';

const blockDrive: DriveConfig = {
  path: '/srv/roots/web.img',
  serialId: 'web',
  readOnly: false,
  format: 'raw',
  fd: { fd: 3, set: 0, type: 'file' },
};
const device: DriveConfig = {
  path: '/dev/roots/data',
  serialId: 'dev-c-xdata',
  readOnly: true,
  cache: 'writeback',
  fd: { fd: 4, set: 1, type: 'block' },
};

describe('drive hot-plug commands', () => {
  it('mirror the cold command line: same ids, fd set, driver, access mode, cache and serial', () => {
    const cold = buildQemuArgs({
      name: 'x',
      machine: 'pc',
      accelerator: 'tcg',
      vcpus: 1,
      memoryMiB: 512,
      kernel: '/k',
      console: { logFile: '/c' },
      qmpSocket: '/q',
      drives: [blockDrive, device],
    }).join(' ');
    const [add0, dev0] = driveHotplugCommands(blockDrive, 0);
    expect(add0).toEqual({
      execute: 'blockdev-add',
      arguments: {
        'node-name': 'drive-0',
        driver: 'raw',
        'read-only': false,
        cache: { direct: true, 'no-flush': false },
        file: {
          driver: 'file',
          filename: '/dev/fdset/0',
          'read-only': false,
          'auto-read-only': false,
          cache: { direct: true, 'no-flush': false },
        },
      },
    });
    const serial0 = (dev0!.arguments as { serial: string }).serial;
    expect(cold).toContain(`drive=drive-0,id=blk-0,serial=${serial0}`);
    expect(dev0).toEqual({
      execute: 'device_add',
      arguments: { driver: 'virtio-blk-pci', drive: 'drive-0', id: 'blk-0', serial: serial0 },
    });
    const [add1] = driveHotplugCommands(device, 1);
    expect(add1!.arguments).toMatchObject({
      'node-name': 'drive-1',
      'read-only': true,
      cache: { direct: false },
      file: { driver: 'host_device', filename: '/dev/fdset/1', 'read-only': true },
    });
    expect(cold).toContain('file.driver=host_device,file.filename=/dev/fdset/1');
  });

  it('a drive without a descriptor is never plugged by path', () => {
    expect(() => driveHotplugCommands({ path: '/x', serialId: 'x' }, 0)).toThrow(/no descriptor/);
  });

  it('qmp-fds arguments: each descriptor to its set, then the commands in drive order', () => {
    const args = qmpFdsArgs('/run/vm/qmp.sock', [blockDrive, device], 20_000);
    expect(args.slice(0, 5)).toEqual([
      'qmp-fds',
      '--socket=/run/vm/qmp.sock',
      '--timeout-ms=20000',
      '--fdset=3:0',
      '--fdset=4:1',
    ]);
    const cmds = args
      .slice(5)
      .map((a) => JSON.parse(a.replace(/^--command=/, '')) as { execute: string });
    expect(cmds.map((c) => c.execute)).toEqual([
      'blockdev-add',
      'device_add',
      'blockdev-add',
      'device_add',
    ]);
  });
});

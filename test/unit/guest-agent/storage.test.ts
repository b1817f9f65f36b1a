import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlockDevices, parseMajorMinor } from '../../../src/agent/guest/block-devices.js';
import { validateDevice, withDevices } from '../../../src/agent/guest/device-nodes.js';
import { toOciConfig } from '../../../src/agent/guest/oci-config.js';
import {
  mountArgv,
  StorageMounter,
  validateStorage,
} from '../../../src/agent/guest/storage-mounter.js';
import { blockDevice, blockRootfsStorage, sharedDirStorage } from '../../../src/agent/storage.js';
import type { CommandRunner } from '../../../src/common/run-command.js';
import type { Storage } from '../../../src/generated/agent.js';
import { Spec } from '../../../src/generated/oci.js';
import { configValidator } from './oci-schema.js';
import { ran } from './ran.js';

let sys: string;
beforeAll(() => {
  // A fake /sys/block: vda (no serial), vdb (serial c1), vdc (serial data-1).
  sys = mkdtempSync(path.join(tmpdir(), 'sys-block-'));
  const disk = (name: string, dev: string, serial?: string): void => {
    mkdirSync(path.join(sys, name));
    writeFileSync(path.join(sys, name, 'dev'), `${dev}\n`);
    if (serial !== undefined) writeFileSync(path.join(sys, name, 'serial'), `${serial}\n`);
  };
  disk('vda', '254:0', '');
  disk('vdb', '254:16', 'c1');
  disk('vdc', '254:32', 'data-1');
  mkdirSync(path.join(sys, 'loop0'));
});
afterAll(() => rmSync(sys, { recursive: true, force: true }));

const devices = (timeoutMs = 200): BlockDevices =>
  new BlockDevices({ sysBlockDir: sys, timeoutMs, pollMs: 10 });

describe('block drives by serial', () => {
  it('parses major:minor', () => {
    expect(parseMajorMinor('254:16\n')).toEqual({ major: 254, minor: 16 });
    expect(parseMajorMinor('x')).toBeUndefined();
  });

  it('finds the drive by serial, ignoring the name hint', async () => {
    expect(await devices().find('c1', '/dev/vdc')).toEqual({
      name: 'vdb',
      devPath: '/dev/vdb',
      major: 254,
      minor: 16,
    });
  });

  it('waits for a drive that appears late', async () => {
    setTimeout(() => {
      mkdirSync(path.join(sys, 'vdd'));
      writeFileSync(path.join(sys, 'vdd', 'dev'), '254:48\n');
      writeFileSync(path.join(sys, 'vdd', 'serial'), 'late');
    }, 50);
    expect((await devices(2000).find('late')).name).toBe('vdd');
  });

  it('falls back to the hint only if that drive has no serial; otherwise times out', async () => {
    expect((await devices().find('missing', '/dev/vda')).name).toBe('vda');
    await expect(devices().find('missing', '/dev/vdc')).rejects.toMatchObject({
      code: status.DEADLINE_EXCEEDED,
    });
  });
});

describe('storages', () => {
  it('9p: the share with its options', () => {
    expect(mountArgv(sharedDirStorage())).toEqual([
      '-t',
      '9p',
      '-o',
      'trans=virtio,version=9p2000.L,nodev',
      'kataShared',
      '/run/kata-containers/shared/containers/',
    ]);
  });

  it('blk: the resolved drive, ro honoured, xfs gets nouuid', () => {
    expect(mountArgv(blockRootfsStorage('c1', 1, 'ext4', true), '/dev/vdb')).toEqual([
      '-t',
      'ext4',
      '-o',
      'ro',
      '/dev/vdb',
      '/run/kata-containers/shared/containers/c1',
    ]);
    const xfs = { ...blockRootfsStorage('c1', 1, 'xfs'), options: [] };
    expect(mountArgv(xfs, '/dev/vdb')).toEqual([
      '-t',
      'xfs',
      '-o',
      'nouuid',
      '/dev/vdb',
      '/run/kata-containers/shared/containers/c1',
    ]);
  });

  it('local: a directory, or a tmpfs', () => {
    const local: Storage = {
      driver: 'local',
      driverOptions: [],
      source: '',
      fstype: '',
      options: [],
      mountPoint: '/run/kata-containers/sandbox/local/v1',
    };
    expect(mountArgv(local)).toBeUndefined();
    expect(mountArgv({ ...local, fstype: 'tmpfs', options: ['size=1m'] })).toEqual([
      '-t',
      'tmpfs',
      '-o',
      'size=1m',
      'tmpfs',
      '/run/kata-containers/sandbox/local/v1',
    ]);
  });

  it('takes comma-joined options as Kata 1.x sends them, one by one', () => {
    const kata1 = {
      ...sharedDirStorage(),
      options: ['trans=virtio,version=9p2000.L,cache=mmap', 'nodev', 'msize=8192'],
    };
    expect(() => validateStorage(kata1, 's')).not.toThrow();
    expect(mountArgv(kata1)).toEqual([
      '-t',
      '9p',
      '-o',
      'trans=virtio,version=9p2000.L,cache=mmap,nodev,msize=8192',
      'kataShared',
      '/run/kata-containers/shared/containers/',
    ]);
  });

  it('ephemeral: a tmpfs named by its source, as Kata 1.x mounts the sandbox shm', () => {
    const shm: Storage = {
      driver: 'ephemeral',
      driverOptions: [],
      source: 'shm',
      fstype: 'tmpfs',
      options: ['noexec', 'nosuid', 'nodev', 'mode=1777', 'size=67108864'],
      mountPoint: '/run/kata-containers/sandbox/shm',
    };
    expect(() => validateStorage(shm, 's')).not.toThrow();
    expect(mountArgv(shm)).toEqual([
      '-t',
      'tmpfs',
      '-o',
      'noexec,nosuid,nodev,mode=1777,size=67108864',
      'shm',
      '/run/kata-containers/sandbox/shm',
    ]);
    expect(() => validateStorage({ ...shm, fstype: 'ext4' }, 's')).toThrow(
      /^s\.fstype "ext4": an ephemeral storage is a tmpfs/,
    );
    expect(() => validateStorage({ ...shm, mountPoint: '/dev/shm' }, 's')).toThrow(
      /^s\.mount_point "\/dev\/shm" escapes \/run\/kata-containers\//,
    );
    expect(() => validateStorage({ ...shm, source: 'a b' }, 's')).toThrow(/^s\.source/);
  });

  it.each<[string, Partial<Storage>, RegExp]>([
    ['../../etc', { mountPoint: '../../etc' }, /^s\.mount_point "\.\.\/\.\.\/etc" escapes/],
    ['an unknown driver', { driver: 'nfs' }, /^s\.driver "nfs" is not supported/],
    ['an option with a space', { options: ['a b'] }, /^s\.options\[0\] "a b" is not/],
    [
      'a bad option among comma-joined ones',
      { options: ['nodev', 'trans=virtio,x y'] },
      /^s\.options\[1\] "x y" \(in "trans=virtio,x y"\) is not a mount option/,
    ],
    ['an empty option between commas', { options: ['a,,b'] }, /^s\.options\[0\] ""/],
    ['a bad fstype', { fstype: 'ext4 -o x' }, /^s\.fstype/],
    ['a bad 9p tag', { source: 'a b' }, /^s\.source/],
  ])('refuses %s', (_n, change, msg) => {
    expect(() => validateStorage({ ...sharedDirStorage(), ...change }, 's')).toThrow(msg);
  });

  it('refuses blk storages without a serial or with a source outside /dev/', () => {
    const blk = blockRootfsStorage('c1', 1, 'ext4');
    expect(() => validateStorage({ ...blk, driverOptions: [] }, 's')).toThrow(/serial=/);
    expect(() => validateStorage({ ...blk, source: '/etc/shadow' }, 's')).toThrow(
      /^s\.source "\/etc\/shadow" escapes \/dev\//,
    );
    expect(() => validateStorage(blk, 's')).not.toThrow();
  });

  it('mounts, then unmounts per owner in reverse order (lazy when busy)', async () => {
    const calls: string[][] = [];
    const made: string[] = [];
    const run: CommandRunner = async (argv) => {
      calls.push([...argv]);
      if (argv[0] === 'umount' && argv[1] === '/run/kata-containers/shared/containers/c1') {
        throw new Error('busy');
      }
      return ran(argv);
    };
    const m = new StorageMounter({
      run,
      blockDevices: devices(),
      makeDir: async (d) => made.push(d),
    });
    await m.mount(sharedDirStorage(), 'sandbox');
    await m.mount(blockRootfsStorage('c1', 0, 'ext4'), 'c1');
    await m.mount(blockRootfsStorage('c1', 0, 'ext4'), 'c1'); // already mounted: no-op
    expect(calls.map((c) => c.at(-2))).toEqual(['kataShared', '/dev/vdb']);
    expect(made).toContain('/run/kata-containers/shared/containers/c1');
    expect(await m.unmountOwner('c1')).toEqual([]);
    expect(m.mountsOf('c1')).toEqual([]);
    expect(await m.unmountAll()).toEqual([]);
    expect(calls.slice(2)).toEqual([
      ['umount', '/run/kata-containers/shared/containers/c1'],
      ['umount', '-l', '/run/kata-containers/shared/containers/c1'],
      ['umount', '/run/kata-containers/shared/containers/'],
    ]);
  });

  it('a mount point several owners use is unmounted when the last one lets go (Kata 1.x counts them)', async () => {
    const calls: string[][] = [];
    const run: CommandRunner = async (argv) => {
      calls.push([...argv]);
      return ran(argv);
    };
    const m = new StorageMounter({ run, blockDevices: devices(), makeDir: async () => {} });
    const mem: Storage = {
      driver: 'ephemeral',
      driverOptions: [],
      source: 'cache',
      fstype: 'tmpfs',
      options: [],
      mountPoint: '/run/kata-containers/sandbox/ephemeral/cache',
    };
    await m.mount(mem, 'c1');
    await m.mount(mem, 'c2');
    expect(calls).toHaveLength(1);
    expect(await m.unmountOwner('c1')).toEqual([]);
    expect(calls).toHaveLength(1);
    expect(m.mountsOf('c2')).toEqual([mem.mountPoint]);
    expect(await m.unmountOwner('c2')).toEqual([]);
    expect(calls.at(-1)).toEqual(['umount', mem.mountPoint]);
  });
});

describe('device nodes', () => {
  it('validates block devices', () => {
    expect(() => validateDevice(blockDevice('data-1', 2, '/dev/xvda'), 'devices[0]')).not.toThrow();
    expect(() =>
      validateDevice({ ...blockDevice('data-1', 2, '/dev/xvda'), type: 'vfio' }, 'devices[0]'),
    ).toThrow(/^devices\[0\]\.type/);
    expect(() =>
      validateDevice({ ...blockDevice('data-1', 2, '/dev/xvda'), containerPath: '/dev/../x' }, 'd'),
    ).toThrow(/^d\.container_path/);
  });

  it('adds the resolved drive to linux.devices (replacing a placeholder), and an allow rule when there is a policy', async () => {
    const validate = configValidator();
    const drive = await devices().find('data-1');
    const base = toOciConfig(
      Spec.fromPartial({
        Root: { Path: '/run/kata-containers/shared/containers/c1/rootfs' },
        Process: { Args: ['true'] },
        Linux: { Devices: [{ Path: '/dev/xvda', Type: 'b' }] },
      }),
    );
    const plain = withDevices(base, [{ containerPath: '/dev/xvda', drive }]);
    expect(plain.linux.devices).toEqual([
      { path: '/dev/xvda', type: 'b', major: 254, minor: 32, fileMode: 0o660, uid: 0, gid: 0 },
    ]);
    expect(plain.linux.resources).toBeUndefined();
    expect(validate(plain)).toBe(true);

    const withPolicy = withDevices(
      {
        ...base,
        linux: { ...base.linux, resources: { devices: [{ allow: false, access: 'rwm' }] } },
      },
      [{ containerPath: '/dev/xvda', drive }],
    );
    expect(withPolicy.linux.resources?.devices).toEqual([
      { allow: false, access: 'rwm' },
      { allow: true, type: 'b', major: 254, minor: 32, access: 'rwm' },
    ]);
    expect(validate(withPolicy)).toBe(true);
  });
});

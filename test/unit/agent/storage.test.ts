import { describe, expect, it } from '@jest/globals';
import {
  blockDevice,
  blockDriveName,
  blockRootfsStorage,
  containerRootPath,
  replaceMountSources,
  sharedDirStorage,
} from '../../../src/agent/storage.js';
import {
  createSandboxRequest,
  dnsLines,
  guestHostname,
} from '../../../src/agent/agent-requests.js';

describe('blockDriveName', () => {
  it.each([
    [0, 'vda'],
    [1, 'vdb'],
    [25, 'vdz'],
    [26, 'vdaa'],
    [27, 'vdab'],
    [51, 'vdaz'],
    [52, 'vdba'],
    [701, 'vdzz'],
    [702, 'vdaaa'],
    [18277, 'vdzzz'],
  ])('index %i → %s', (index, name) => {
    expect(blockDriveName(index)).toBe(name);
  });

  it.each([-1, 1.5, Number.NaN])('refuses index %p', (index) => {
    expect(() => blockDriveName(index)).toThrow(/^blockIndex: /);
  });
});

describe('storages and devices', () => {
  it('describes the sandbox 9p share', () => {
    expect(sharedDirStorage()).toEqual({
      driver: '9p',
      driverOptions: [],
      source: 'kataShared',
      fstype: '9p',
      options: ['trans=virtio', 'version=9p2000.L', 'nodev'],
      mountPoint: '/run/kata-containers/shared/containers/',
    });
  });

  it('mounts a block rootfs at the container dir, found by serial, xfs with nouuid', () => {
    expect(blockRootfsStorage('web', 0, 'ext4')).toEqual({
      driver: 'blk',
      driverOptions: ['serial=web'],
      source: '/dev/vda',
      fstype: 'ext4',
      options: [],
      mountPoint: '/run/kata-containers/shared/containers/web',
    });
    const xfs = blockRootfsStorage('db', 27, 'xfs', true);
    expect(xfs.source).toBe('/dev/vdab');
    expect(xfs.options).toEqual(['nouuid', 'ro']);
    expect(containerRootPath('db')).toBe('/run/kata-containers/shared/containers/db/rootfs');
  });

  it('describes a block device for a container path', () => {
    expect(blockDevice('dev-xvdb', 2, '/dev/xvdb')).toEqual({
      id: 'dev-xvdb',
      type: 'blk',
      vmPath: '/dev/vdc',
      containerPath: '/dev/xvdb',
      options: [],
    });
    expect(() => blockDevice('d', 0, 'dev/xvdb')).toThrow(/^devices.containerPath: /);
  });

  it('replaces bind mount sources by their guest paths', () => {
    const mounts = [
      { destination: '/data', source: '/srv/data', type: 'bind', options: ['rbind', 'ro'] },
      { destination: '/proc', source: 'proc', type: 'proc', options: [] },
    ];
    const out = replaceMountSources(
      mounts,
      new Map([['/srv/data', '/run/kata-containers/shared/containers/_volumes/data']]),
    );
    expect(out[0]?.source).toBe('/run/kata-containers/shared/containers/_volumes/data');
    expect(out[1]).toBe(mounts[1]);
    expect(mounts[0]?.source).toBe('/srv/data');
  });
});

describe('sandbox request', () => {
  it('cuts the hostname to 64 characters', () => {
    expect(guestHostname('a'.repeat(70))).toBe('a'.repeat(64));
    expect(guestHostname('web')).toBe('web');
  });

  it('carries DNS as resolv.conf lines', () => {
    expect(
      dnsLines({ nameservers: ['10.0.0.10', '10.0.0.11'], searches: ['svc.local', 'local'] }),
    ).toEqual(['nameserver 10.0.0.10', 'nameserver 10.0.0.11', 'search svc.local local']);
    const req = createSandboxRequest({
      sandboxId: 'uid-1',
      hostname: 'h'.repeat(80),
      dns: { nameservers: [], searches: [] },
      storages: [sharedDirStorage()],
    });
    expect(req.hostname).toHaveLength(64);
    expect(req.dns).toEqual([]);
    expect(req.storages).toHaveLength(1);
    expect(req.sandboxId).toBe('uid-1');
  });
});

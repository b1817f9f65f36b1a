import { describe, expect, it } from '@jest/globals';
import type { KataSandboxSpec } from '../../../src/crds/index.js';
import {
  allowedRootsFor,
  allowingRoot,
  checkLexically,
  HostPathError,
  hostPathsOf,
  isUnderRoot,
  typedHostPathsOf,
} from '../../../src/node-agent/storage/host-paths.js';

const roots = {
  allowedHostPathRoots: ['/srv', '/var/lib/kata-rootfs'],
  allowedDeviceRoots: ['/dev'],
};

function refused(fn: () => void): HostPathError {
  try {
    fn();
  } catch (e) {
    return e as HostPathError;
  }
  throw new Error('not refused');
}

describe('host path allow-list (the pure half)', () => {
  it('isUnderRoot is by path segment, not by string prefix', () => {
    expect(isUnderRoot('/srv', '/srv')).toBe(true);
    expect(isUnderRoot('/srv/a/b', '/srv')).toBe(true);
    expect(isUnderRoot('/srvx', '/srv')).toBe(false);
    expect(isUnderRoot('/', '/srv')).toBe(false);
    expect(allowingRoot('/var/lib/kata-rootfs/x', ['/srv', '/var/lib/kata-rootfs'])).toBe(
      '/var/lib/kata-rootfs',
    );
  });

  it('names every host path field of a spec with its kind', () => {
    const spec = {
      containers: [
        { name: 'a', rootfs: { hostPath: { path: '/srv/a' } } },
        { name: 'b', image: 'x' },
        {
          name: 'c',
          rootfs: { block: { path: '/srv/c.img' } },
          devices: [{ hostPath: '/dev/loop3', containerPath: '/dev/x' }],
        },
      ],
      volumes: [{ name: 'v', hostPath: { path: '/srv/v' } }],
    } as unknown as KataSandboxSpec;
    expect(hostPathsOf(spec)).toEqual([
      { field: 'spec.containers[0].rootfs.hostPath.path', path: '/srv/a' },
      { field: 'spec.volumes[0].hostPath.path', path: '/srv/v' },
    ]);
    expect(typedHostPathsOf(spec).map((r) => [r.field, r.kind])).toEqual([
      ['spec.containers[0].rootfs.hostPath.path', 'dir'],
      ['spec.volumes[0].hostPath.path', 'dir'],
      ['spec.containers[2].rootfs.block.path', 'blockSource'],
      ['spec.containers[2].devices[0].hostPath', 'device'],
    ]);
  });

  it('typed roots: directories and image files under the host-path roots, block devices only under the device roots', () => {
    expect(allowedRootsFor('dir', roots)).toEqual([
      { root: '/srv', type: 'dir' },
      { root: '/var/lib/kata-rootfs', type: 'dir' },
    ]);
    expect(allowedRootsFor('blockSource', roots)).toEqual([
      { root: '/srv', type: 'file' },
      { root: '/var/lib/kata-rootfs', type: 'file' },
      { root: '/dev', type: 'block' },
    ]);
    expect(allowedRootsFor('device', roots)).toEqual([{ root: '/dev', type: 'block' }]);
    expect(allowedRootsFor('device', { ...roots, allowedDeviceRoots: [] })).toEqual([]);
  });

  it('refuses, naming the field: a relative path, a path under no root, a device under the host-path roots', () => {
    const rel = refused(() => checkLexically({ field: 'f0', path: 'srv/a', kind: 'dir' }, roots));
    expect(rel.reason).toBe('HostPathNotAllowed');
    expect(rel.message).toMatch(/^f0: .*not an absolute path/);
    const out = refused(() =>
      checkLexically({ field: 'spec.volumes[0].hostPath.path', path: '/etc', kind: 'dir' }, roots),
    );
    expect(out).toBeInstanceOf(HostPathError);
    expect(out.field).toBe('spec.volumes[0].hostPath.path');
    // A dir under the device roots is not a directory root.
    expect(
      refused(() => checkLexically({ field: 'f', path: '/dev/shm', kind: 'dir' }, roots)).reason,
    ).toBe('HostPathNotAllowed');
    const dev = refused(() =>
      checkLexically(
        { field: 'spec.containers[0].devices[0].hostPath', path: '/srv/disk', kind: 'device' },
        roots,
      ),
    );
    expect(dev.message).toContain('spec.containers[0].devices[0].hostPath');
    expect(dev.message).toContain('device roots');
    expect(() =>
      checkLexically({ field: 'f', path: '/srv/../srv/x.img', kind: 'blockSource' }, roots),
    ).not.toThrow();
    expect(() =>
      checkLexically({ field: 'f', path: '/dev/loop0', kind: 'blockSource' }, roots),
    ).not.toThrow();
  });
});

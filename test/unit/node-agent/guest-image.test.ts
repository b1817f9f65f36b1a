import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  GuestImageMissingError,
  guestImageCacheRoot,
  readGuestImageManifest,
  resolveGuestImage,
  guestRootFor,
} from '../../../src/node-agent/hypervisor/guest-image.js';

const manifest = {
  hash: 'abc123',
  kernelVersion: '6.1.0-56-amd64',
  nodeVersion: 'v20.20.2',
  agentPath: '/usr/bin/kata-guest-agent.js',
  initrdCompression: 'none',
  cmdline: 'console=ttyS0 quiet panic=-1',
  sizes: { vmlinuz: 1, initrd: 2 },
};

let tmp: string;

function makeImage(root: string, hash: string, files: string[]): string {
  const dir = path.join(root, 'kata-sandbox-operator', 'guest', hash);
  mkdirSync(dir, { recursive: true });
  for (const f of files) {
    writeFileSync(path.join(dir, f), f === 'manifest.json' ? JSON.stringify(manifest) : f);
  }
  return dir;
}

function pointCurrent(root: string, hash: string): void {
  symlinkSync(hash, path.join(root, 'kata-sandbox-operator', 'guest', 'current'));
}

beforeEach(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'guest-image-test-'));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('guestImageCacheRoot', () => {
  it('uses XDG_CACHE_HOME when it is absolute', () => {
    expect(guestImageCacheRoot({ XDG_CACHE_HOME: '/x/cache' }, '/home/u')).toBe(
      '/x/cache/kata-sandbox-operator/guest',
    );
  });
  it('falls back to ~/.cache when XDG_CACHE_HOME is unset, empty or relative', () => {
    for (const env of [{}, { XDG_CACHE_HOME: '' }, { XDG_CACHE_HOME: 'rel/cache' }]) {
      expect(guestImageCacheRoot(env, '/home/u')).toBe(
        '/home/u/.cache/kata-sandbox-operator/guest',
      );
    }
  });
});

describe('resolveGuestImage', () => {
  it('resolves current to its hash directory and prefers vmlinux', () => {
    const dir = makeImage(tmp, 'h1', ['vmlinux', 'vmlinuz', 'initrd', 'manifest.json']);
    pointCurrent(tmp, 'h1');
    const img = resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } });
    expect(img).toEqual({
      dir,
      kernel: path.join(dir, 'vmlinux'),
      vmlinuz: path.join(dir, 'vmlinuz'),
      kernels: { default: path.join(dir, 'vmlinux') },
      initrd: path.join(dir, 'initrd'),
      manifest: path.join(dir, 'manifest.json'),
    });
    const { kernels, ...paths } = img;
    for (const p of [...Object.values(paths), ...Object.values(kernels)]) {
      expect(path.isAbsolute(p)).toBe(true);
    }
  });

  it('offers the stock kernel of debian/ as "debian" beside the default', () => {
    const dir = makeImage(tmp, 'h5', ['vmlinux', 'vmlinuz', 'initrd', 'manifest.json']);
    pointCurrent(tmp, 'h5');
    expect(resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } }).kernels).toEqual({
      default: path.join(dir, 'vmlinux'),
    });
    // A debian/ without any kernel in it offers nothing.
    mkdirSync(path.join(dir, 'debian'));
    expect(Object.keys(resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } }).kernels)).toEqual([
      'default',
    ]);
    writeFileSync(path.join(dir, 'debian', 'vmlinuz'), 'bz');
    expect(resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } }).kernels['debian']).toBe(
      path.join(dir, 'debian', 'vmlinuz'),
    );
    writeFileSync(path.join(dir, 'debian', 'vmlinux'), 'elf');
    const img = resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } });
    expect(img.kernels).toEqual({
      default: path.join(dir, 'vmlinux'),
      debian: path.join(dir, 'debian', 'vmlinux'),
    });
    expect(
      resolveGuestImage({ env: { XDG_CACHE_HOME: tmp }, preferBzImage: true }).kernels['debian'],
    ).toBe(path.join(dir, 'debian', 'vmlinuz'));
  });

  it("offers rootfs.erofs as the default kernel's root drive; debian boots the initrd", () => {
    const dir = makeImage(tmp, 'h6', [
      'vmlinux',
      'vmlinuz',
      'initrd',
      'rootfs.erofs',
      'manifest.json',
    ]);
    mkdirSync(path.join(dir, 'debian'));
    writeFileSync(path.join(dir, 'debian', 'vmlinux'), 'elf');
    pointCurrent(tmp, 'h6');
    const img = resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } });
    expect(img.rootDisk).toBe(path.join(dir, 'rootfs.erofs'));
    expect(guestRootFor(img, 'default')).toEqual({
      rootDisk: { path: path.join(dir, 'rootfs.erofs'), fsType: 'erofs' },
    });
    expect(guestRootFor(img, 'debian')).toEqual({ initrd: path.join(dir, 'initrd') });
    // An image without one (a GUEST_EXEC_AGENT variant) boots every kernel from the initrd.
    const { rootDisk: _, ...older } = img;
    expect(guestRootFor(older, 'default')).toEqual({ initrd: path.join(dir, 'initrd') });
  });

  it('boots the bzImage when there is no vmlinux or when asked to', () => {
    const dir = makeImage(tmp, 'h2', ['vmlinuz', 'initrd', 'manifest.json']);
    pointCurrent(tmp, 'h2');
    expect(resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } }).kernel).toBe(
      path.join(dir, 'vmlinuz'),
    );
    makeImage(tmp, 'h2', ['vmlinux']);
    expect(resolveGuestImage({ env: { XDG_CACHE_HOME: tmp }, preferBzImage: true }).kernel).toBe(
      path.join(dir, 'vmlinuz'),
    );
  });

  it('uses HOME/.cache when XDG_CACHE_HOME is unset', () => {
    const home = path.join(tmp, 'home');
    const dir = makeImage(path.join(home, '.cache'), 'h3', ['vmlinuz', 'initrd', 'manifest.json']);
    pointCurrent(path.join(home, '.cache'), 'h3');
    expect(resolveGuestImage({ env: {}, homeDir: home }).dir).toBe(dir);
  });

  it('takes an explicit image directory over the cache', () => {
    const dir = makeImage(tmp, 'other', ['vmlinuz', 'initrd', 'manifest.json']);
    const img = resolveGuestImage({ imageDir: dir, env: { XDG_CACHE_HOME: '/nonexistent' } });
    expect(img.initrd).toBe(path.join(dir, 'initrd'));
  });

  it('names the missing image directory', () => {
    const want = path.join(tmp, 'kata-sandbox-operator', 'guest', 'current');
    expect(() => resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } })).toThrow(
      new GuestImageMissingError(want, 'does not exist'),
    );
    expect(() => resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } })).toThrow(/make guest/);
  });

  it('names the missing file', () => {
    const dir = makeImage(tmp, 'h4', ['vmlinuz', 'manifest.json']);
    pointCurrent(tmp, 'h4');
    expect(() => resolveGuestImage({ env: { XDG_CACHE_HOME: tmp } })).toThrow(
      `guest image: ${path.join(dir, 'initrd')} is missing`,
    );
  });
});

describe('readGuestImageManifest', () => {
  it('reads the manifest', () => {
    const dir = makeImage(tmp, 'h5', ['manifest.json']);
    expect(readGuestImageManifest(path.join(dir, 'manifest.json'))).toEqual(manifest);
  });
  it('rejects a manifest without the expected fields, naming the file', () => {
    const p = path.join(tmp, 'manifest.json');
    writeFileSync(p, JSON.stringify({ hash: 'x' }));
    expect(() => readGuestImageManifest(p)).toThrow(`${p} has no string "kernelVersion"`);
    writeFileSync(p, '{');
    expect(() => readGuestImageManifest(p)).toThrow(`${p} is unreadable`);
  });
});

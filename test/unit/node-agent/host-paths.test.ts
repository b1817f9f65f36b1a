import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { KataSandboxSpec } from '../../../src/crds/index.js';
import {
  allowingRoot,
  checkHostPaths,
  HostPathError,
  hostPathsOf,
  isUnderRoot,
} from '../../../src/node-agent/host-paths.js';

let dir: string;
let root: string;
let outside: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'host-paths-'));
  root = path.join(dir, 'allowed');
  outside = path.join(dir, 'outside');
  mkdirSync(path.join(root, 'rootfs'), { recursive: true });
  mkdirSync(outside, { recursive: true });
  symlinkSync(outside, path.join(root, 'escape'));
  symlinkSync(path.join(root, 'rootfs'), path.join(root, 'inside-link'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('host path allow-list', () => {
  it('isUnderRoot is by path segment, not by string prefix', () => {
    expect(isUnderRoot('/srv', '/srv')).toBe(true);
    expect(isUnderRoot('/srv/a/b', '/srv')).toBe(true);
    expect(isUnderRoot('/srvx', '/srv')).toBe(false);
    expect(isUnderRoot('/', '/srv')).toBe(false);
    expect(allowingRoot('/var/lib/kata-rootfs/x', ['/srv', '/var/lib/kata-rootfs'])).toBe(
      '/var/lib/kata-rootfs',
    );
  });

  it('names every hostPath field of a spec', () => {
    const spec = {
      containers: [
        { name: 'a', rootfs: { hostPath: { path: '/srv/a' } } },
        { name: 'b', image: 'x' },
      ],
      volumes: [{ name: 'v', hostPath: { path: '/srv/v' } }],
    } as unknown as KataSandboxSpec;
    expect(hostPathsOf(spec)).toEqual([
      { field: 'spec.containers[0].rootfs.hostPath.path', path: '/srv/a' },
      { field: 'spec.volumes[0].hostPath.path', path: '/srv/v' },
    ]);
  });

  it('accepts paths under a root, resolving symlinks that stay inside', async () => {
    const res = await checkHostPaths(
      [
        { field: 'f0', path: path.join(root, 'rootfs') },
        { field: 'f1', path: path.join(root, 'inside-link') },
      ],
      [root],
    );
    expect(res.map((r) => r.resolved)).toEqual([
      path.join(root, 'rootfs'),
      path.join(root, 'rootfs'),
    ]);
  });

  it('refuses a path outside the roots, naming the field', async () => {
    const err = await checkHostPaths(
      [{ field: 'spec.volumes[0].hostPath.path', path: outside }],
      [root],
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostPathError);
    expect((err as HostPathError).reason).toBe('HostPathNotAllowed');
    expect((err as HostPathError).field).toBe('spec.volumes[0].hostPath.path');
    expect((err as Error).message).toContain('spec.volumes[0].hostPath.path');
  });

  it('refuses a symlink under a root that escapes it', async () => {
    const err = await checkHostPaths(
      [{ field: 'f', path: path.join(root, 'escape') }],
      [root],
    ).catch((e: unknown) => e);
    expect((err as HostPathError).reason).toBe('HostPathNotAllowed');
    expect((err as Error).message).toContain('resolves to');
  });

  it('a missing path is HostPathNotFound', async () => {
    const err = await checkHostPaths([{ field: 'f', path: path.join(root, 'nope') }], [root]).catch(
      (e: unknown) => e,
    );
    expect((err as HostPathError).reason).toBe('HostPathNotFound');
  });
});

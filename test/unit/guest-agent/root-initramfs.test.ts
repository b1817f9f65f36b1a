import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { rootIsInitramfs } from '../../../src/agent/guest/container-manager.js';

const dir = mkdtempSync(path.join(tmpdir(), 'root-initramfs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function mounts(text: string): string {
  const f = path.join(dir, `m${Math.random()}`);
  writeFileSync(f, text);
  return f;
}

describe('rootIsInitramfs (crun run --no-pivot)', () => {
  it('is true when / is the initial rootfs (an initramfs guest)', () => {
    const f = mounts('rootfs / rootfs rw,size=250000k 0 0\nproc /proc proc rw 0 0\n');
    expect(rootIsInitramfs(f)).toBe(true);
  });

  it('is false when a real filesystem is mounted over /', () => {
    const f = mounts('rootfs / rootfs rw 0 0\n/dev/vda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n');
    expect(rootIsInitramfs(f)).toBe(false);
    expect(rootIsInitramfs(mounts('overlay / overlay rw 0 0\n'))).toBe(false);
  });

  it('is false when the mount table cannot be read', () => {
    expect(rootIsInitramfs(path.join(dir, 'missing'))).toBe(false);
  });
});

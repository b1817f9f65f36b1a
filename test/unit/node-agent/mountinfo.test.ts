import { describe, expect, it } from '@jest/globals';
import {
  mountsUnder,
  overlayLowerDirs,
  parseMountInfo,
} from '../../../src/node-agent/storage/mountinfo.js';

const TEXT = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '90 22 0:50 / /var/lib/v/u1/main/merged rw,relatime shared:40 - overlay overlay rw,lowerdir=/var/lib/i/images/sha256-aa/rootfs,upperdir=/var/lib/v/u1/main/upper,workdir=/var/lib/v/u1/main/work',
  '91 22 254:0 /srv/my\\040dir /run/share/u1/_volumes/d ro,relatime shared:1 - ext4 /dev/vda rw',
  '92 22 0:51 / /var/lib/v/u1/side/merged rw shared:41 - overlay overlay rw,lowerdir=/a:/b,upperdir=/u,workdir=/w',
  'garbage',
].join('\n');

describe('mountinfo', () => {
  const entries = parseMountInfo(TEXT);
  it('parses mount point, type, source and both option sets', () => {
    expect(entries).toHaveLength(4);
    expect(entries[2]).toEqual({
      mountPoint: '/run/share/u1/_volumes/d',
      options: ['ro', 'relatime'],
      fsType: 'ext4',
      source: '/dev/vda',
      superOptions: ['rw'],
    });
    expect(entries[1]?.fsType).toBe('overlay');
  });
  it('lists mounts below a directory, deepest first, not its siblings', () => {
    expect(mountsUnder(entries, '/var/lib/v/u1').map((e) => e.mountPoint)).toEqual([
      '/var/lib/v/u1/main/merged',
      '/var/lib/v/u1/side/merged',
    ]);
    expect(mountsUnder(entries, '/var/lib/v/u')).toEqual([]);
  });
  it("collects every overlay's lower dirs", () => {
    expect(overlayLowerDirs(entries)).toEqual(['/var/lib/i/images/sha256-aa/rootfs', '/a', '/b']);
  });
});

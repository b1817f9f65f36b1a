// Block rootfs and block devices under real QEMU (TCG): one VM carries every drive, each found in
// the guest by its virtio serial. An ext4 rootfs container writes a file (read back from the image
// on the host afterwards); an xfs rootfs (a 64-character container id, so the serial is the
// derived one) mounts read-only, and a byte-identical clone of it (same UUID) mounts beside it —
// which works only with nouuid; an image file given as a device is readable at its container path.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  lstatSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { planBlockDrives, type BlockDrivePlan } from '../../src/node-agent/storage/block-drives.js';
import {
  bootTestVm,
  busyboxRootfs,
  containerRequest,
  ensureImage,
  runContainer,
  sh,
  vmConfig,
  type TestVm,
} from './sandbox-vm.js';

const EXT4_ID = 'ext4-c1';
const XFS_ID = 'ab'.repeat(32); // 64 characters, like Kata container ids
const XFS_CLONE_ID = 'xfs-clone';
const PAYLOAD = 'DEVICE-PAYLOAD-42';

let scratch: string;
let vm: TestVm | undefined;
let plan: BlockDrivePlan;

/** An xfs protofile (mkfs.xfs -p) describing `dir`, so the image is filled without a mount. */
function protofile(dir: string): string {
  const lines = ['/dev/null', '0 0', 'd--755 0 0'];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) lines.push(`${name} l--777 0 0 ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        lines.push(`${name} d--755 0 0`);
        walk(p);
        lines.push('$');
      } else lines.push(`${name} ---${(st.mode & 0o777).toString(8)} 0 0 ${p}`);
    }
  };
  walk(dir);
  lines.push('$');
  return lines.join('\n') + '\n';
}

beforeAll(async () => {
  const image = ensureImage();
  scratch = mkdtempSync(path.join(tmpdir(), 'block-e2e-'));
  // ext4: a dir holding rootfs/, packed with mkfs.ext4 -d (no mount).
  const ext4Dir = path.join(scratch, 'ext4-tree');
  busyboxRootfs(path.join(ext4Dir, 'rootfs'));
  const ext4 = path.join(scratch, 'ext4.img');
  sh(['truncate', '-s', '64M', ext4]);
  sh(['mkfs.ext4', '-q', '-F', '-d', ext4Dir, ext4]);
  // xfs: the same tree plus a marker, through a protofile; then a byte-identical clone.
  const xfsDir = path.join(scratch, 'xfs-tree');
  busyboxRootfs(path.join(xfsDir, 'rootfs'));
  writeFileSync(path.join(xfsDir, 'rootfs', 'marker'), 'xfs-marker\n');
  const proto = path.join(scratch, 'xfs.proto');
  writeFileSync(proto, protofile(xfsDir));
  const xfs = path.join(scratch, 'xfs.img');
  sh(['truncate', '-s', '300M', xfs]);
  sh(['mkfs.xfs', '-q', '-p', proto, xfs]);
  const clone = path.join(scratch, 'xfs-clone.img');
  copyFileSync(xfs, clone);
  // The device: an image file with a known first line.
  const data = path.join(scratch, 'data.img');
  writeFileSync(data, Buffer.concat([Buffer.from(`${PAYLOAD}\n`), Buffer.alloc(1 << 20)]));

  plan = planBlockDrives(
    [
      { containerId: EXT4_ID, path: ext4, fsType: 'ext4' },
      { containerId: XFS_ID, path: xfs, fsType: 'xfs', readOnly: true },
      { containerId: XFS_CLONE_ID, path: clone, fsType: 'xfs' },
    ],
    [{ containerId: EXT4_ID, hostPath: data, containerPath: '/dev/xvdb', readOnly: true }],
  );
  const dir = path.join(scratch, 'vm');
  mkdirSync(dir);
  vm = await bootTestVm(vmConfig(dir, 'e2e-block', image, { drives: plan.drives }), dir);
  console.log(`block VM booted in ${vm.bootMillis} ms with ${plan.drives.length} drives`);
  await vm.client.createSandbox(
    {
      sandboxId: 'block-sandbox',
      hostname: 'block',
      dns: { nameservers: [], searches: [] },
      storages: [],
    },
    { timeoutMs: 60_000 },
  );
}, 20 * 60_000);

afterAll(async () => {
  await vm?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 60_000);

describe('block rootfs and devices (real VM)', () => {
  it('ext4 rootfs: the container runs, writes a file, and reads the device at its container path', async () => {
    const r = await runContainer(
      vm!.client,
      containerRequest(
        EXT4_ID,
        'echo written-by-container > /data/out.txt && cat /data/out.txt && head -n 1 /dev/xvdb',
        {
          storages: [plan.rootfsStorages.get(EXT4_ID)!],
          devices: plan.devices.get(EXT4_ID)!,
        },
      ),
    );
    expect(r).toMatchObject({ status: 0 });
    expect(r.stdout).toBe(`written-by-container\n${PAYLOAD}\n`);
    // Unmounts the drive (flushing it) so the host can read the file from the image.
    await vm!.client.removeContainer(EXT4_ID, 10);
    const onDisk = sh([
      'debugfs',
      '-R',
      'cat /rootfs/data/out.txt',
      path.join(scratch, 'ext4.img'),
    ]);
    expect(onDisk).toBe('written-by-container\n');
  }, 180_000);

  it('xfs rootfs (64-character id, derived serial) mounts read-only; a same-UUID clone mounts beside it (nouuid)', async () => {
    const ro = await runContainer(
      vm!.client,
      containerRequest(
        XFS_ID,
        'cat /marker; if touch /newfile 2>/dev/null; then echo WRITABLE; else echo READONLY; fi; grep " / " /proc/self/mounts',
        { storages: [plan.rootfsStorages.get(XFS_ID)!] },
      ),
    );
    console.log(`xfs ro container: ${JSON.stringify(ro)}`);
    expect(ro.status).toBe(0);
    expect(ro.stdout).toMatch(/^xfs-marker\nREADONLY\n/);
    expect(ro.stdout).toMatch(/ \/ xfs ro[, ]/);

    const rw = await runContainer(
      vm!.client,
      containerRequest(XFS_CLONE_ID, 'cat /marker && touch /newfile && echo WRITABLE', {
        storages: [plan.rootfsStorages.get(XFS_CLONE_ID)!],
      }),
    );
    expect(rw).toMatchObject({ status: 0, stdout: 'xfs-marker\nWRITABLE\n' });
  }, 180_000);
});

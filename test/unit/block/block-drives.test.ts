// The sandbox's drive plan: indexes → name hints, serials from ids, read-only kept read-only in
// QEMU and in the guest mount, xfs with nouuid, device drives with short ids.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { virtioBlkSerial } from '../../../src/agent/block-serial.js';
import { mountArgv } from '../../../src/agent/guest/storage-mounter.js';
import { blockDriveName } from '../../../src/agent/storage.js';
import { buildQemuArgs, type VmConfig } from '../../../src/node-agent/hypervisor/qemu-args.js';
import {
  checkBlockSource,
  deviceDriveId,
  planBlockDrives,
} from '../../../src/node-agent/storage/block-drives.js';

let dir: string;
const img = (n: string): string => path.join(dir, n);
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'block-drives-'));
  for (const n of ['a.img', 'b.img', 'c.img']) writeFileSync(img(n), Buffer.alloc(4096));
  mkdirSync(img('d'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CID = 'f'.repeat(64);

describe('drive names', () => {
  it('vda…vdz, vdaa…', () => {
    expect([0, 1, 25, 26, 27, 701, 702].map(blockDriveName)).toEqual([
      'vda', 'vdb', 'vdz', 'vdaa', 'vdab', 'vdzz', 'vdaaa',
    ]); // prettier-ignore
  });
});

describe('planBlockDrives', () => {
  it('rootfs drives first, then devices; serials, hints, storages and devices per container', () => {
    const plan = planBlockDrives(
      [
        { containerId: 'c1', path: img('a.img'), fsType: 'ext4' },
        { containerId: CID, path: img('b.img'), fsType: 'xfs', readOnly: true },
      ],
      [{ containerId: 'c1', hostPath: img('c.img'), containerPath: '/dev/xvdb', readOnly: true }],
      { firstIndex: 1, cache: 'writeback' },
    );
    expect(plan.planned.map((p) => [p.index, p.nameHint, p.kind, p.serial])).toEqual([
      [1, 'vdb', 'rootfs', 'c1'],
      [2, 'vdc', 'rootfs', virtioBlkSerial(CID)],
      [3, 'vdd', 'device', deviceDriveId('c1', '/dev/xvdb')],
    ]);
    expect(plan.drives[1]).toEqual({
      path: img('b.img'),
      serialId: CID,
      readOnly: true,
      format: 'raw',
      cache: 'writeback',
    });
    expect(plan.rootfsStorages.get('c1')).toMatchObject({
      driver: 'blk',
      driverOptions: ['serial=c1'],
      source: '/dev/vdb',
      fstype: 'ext4',
      options: [],
      mountPoint: '/run/kata-containers/shared/containers/c1',
    });
    const xfs = plan.rootfsStorages.get(CID)!;
    expect(xfs.options).toEqual(['nouuid', 'ro']);
    // The guest mounts it read-only, with nouuid, from the drive it found by serial.
    expect(mountArgv(xfs, '/dev/vdx')).toEqual([
      '-t', 'xfs', '-o', 'nouuid,ro', '/dev/vdx', `/run/kata-containers/shared/containers/${CID}`,
    ]); // prettier-ignore
    expect(plan.devices.get('c1')).toEqual([
      {
        id: deviceDriveId('c1', '/dev/xvdb'),
        type: 'blk',
        vmPath: '/dev/vdd',
        containerPath: '/dev/xvdb',
        options: [],
      },
    ]);
    expect(plan.devices.get(CID)).toBeUndefined();
  });

  it('QEMU gets readonly=on and the derived serial', () => {
    const plan = planBlockDrives([{ containerId: CID, path: img('a.img'), readOnly: true }], []);
    const vm: VmConfig = {
      name: 'x',
      machine: 'pc',
      accelerator: 'tcg',
      vcpus: 1,
      memoryMiB: 128,
      kernel: '/k',
      console: { logFile: '/c' },
      qmpSocket: '/q',
      drives: plan.drives,
    };
    const args = buildQemuArgs(vm);
    expect(args).toContain(
      `file=${img('a.img')},if=none,id=drive-0,format=raw,readonly=on,cache=none`,
    );
    expect(args).toContain(`virtio-blk-pci,drive=drive-0,id=blk-0,serial=${virtioBlkSerial(CID)}`);
  });

  it('device ids are short, stable and distinct', () => {
    const a = deviceDriveId('c1', '/dev/xvdb');
    expect(a).toMatch(/^dev-[0-9a-f]{16}$/);
    expect(virtioBlkSerial(a)).toBe(a);
    expect(deviceDriveId('c1', '/dev/xvdb')).toBe(a);
    expect(deviceDriveId('c1', '/dev/xvdc')).not.toBe(a);
  });

  it('refuses a missing source, a directory, two rootfs for one container — naming the field', () => {
    expect(() =>
      planBlockDrives(
        [{ containerId: 'c', path: img('nope'), field: 'spec.containers[0].rootfs.block.path' }],
        [],
      ),
    ).toThrow(/^spec\.containers\[0\]\.rootfs\.block\.path: .* does not exist/);
    expect(() => checkBlockSource(img('d'), 'f')).toThrow(
      /neither an image file nor a block device/,
    );
    expect(() => checkBlockSource('rel.img', 'f')).toThrow(/not absolute/);
    expect(() =>
      planBlockDrives(
        [
          { containerId: 'c', path: img('a.img') },
          { containerId: 'c', path: img('b.img') },
        ],
        [],
      ),
    ).toThrow(/two block rootfs/);
    expect(() => checkBlockSource('/dev/null', 'f')).toThrow(/neither/);
  });
});

describe('drives as descriptors', () => {
  it('a drive with a checked source gets its fd set and an open of its own, read-only where the drive is', () => {
    const plan = planBlockDrives(
      [
        {
          containerId: 'c1',
          path: '/srv/c1.img',
          readOnly: true,
          field: 'spec.containers[0].rootfs.block.path',
          source: { root: '/srv', type: 'file' },
        },
      ],
      [
        {
          containerId: 'c1',
          hostPath: '/dev/loop7',
          containerPath: '/dev/x',
          field: 'spec.containers[0].devices[0].hostPath',
          source: { root: '/dev', type: 'block' },
        },
      ],
    );
    expect(plan.drives.map((d) => d.fd)).toEqual([
      { fd: 3, set: 0, type: 'file' },
      { fd: 4, set: 1, type: 'block' },
    ]);
    expect(plan.opens).toEqual([
      { fd: 3, root: '/srv', path: '/srv/c1.img', type: 'file', readOnly: true },
      { fd: 4, root: '/dev', path: '/dev/loop7', type: 'block', readOnly: false },
    ]);
    expect(plan.planned.map((p) => p.field)).toEqual([
      'spec.containers[0].rootfs.block.path',
      'spec.containers[0].devices[0].hostPath',
    ]);
  });
});

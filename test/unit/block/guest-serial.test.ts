// The guest finds a drive by the serial the host gave it: the container/device id when it fits in
// virtio-blk's 20 bytes, else virtioBlkSerial(id) — QEMU would cut a 64-character id silently.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { virtioBlkSerial } from '../../../src/agent/block-serial.js';
import { GUEST_ROOT_DRIVE_SERIAL } from '../../../src/agent/contract.js';
import { BlockDevices, serialForms } from '../../../src/agent/guest/block-devices.js';
import { virtioBlkSerial as hostSerial } from '../../../src/node-agent/hypervisor/block-serial.js';

const LONG_A = 'a'.repeat(11) + '0123456789abcdef'.repeat(3) + 'ffff'; // 64 chars
const LONG_B = 'a'.repeat(11) + 'fedcba9876543210'.repeat(3) + 'eeee'; // same 11-char prefix

let sys: string;
const disk = (name: string, dev: string, serial: string): void => {
  mkdirSync(path.join(sys, name));
  writeFileSync(path.join(sys, name, 'dev'), `${dev}\n`);
  writeFileSync(path.join(sys, name, 'serial'), serial);
};

beforeAll(() => {
  sys = mkdtempSync(path.join(tmpdir(), 'guest-serial-'));
  disk('vda', '254:0', virtioBlkSerial(LONG_A));
  disk('vdb', '254:16', virtioBlkSerial(LONG_B));
  disk('vdc', '254:32', 'short-id');
  disk('vdd', '254:48', '');
  disk('vde', '254:64', GUEST_ROOT_DRIVE_SERIAL);
});
afterAll(() => rmSync(sys, { recursive: true, force: true }));

const devices = (): BlockDevices =>
  new BlockDevices({ sysBlockDir: sys, timeoutMs: 100, pollMs: 10 });

describe('guest serial lookup', () => {
  it('host and guest compute the same serial (one function, re-exported)', () => {
    expect(hostSerial(LONG_A)).toBe(virtioBlkSerial(LONG_A));
    expect(virtioBlkSerial(LONG_A)).toHaveLength(20);
    expect(virtioBlkSerial(LONG_A)).not.toBe(virtioBlkSerial(LONG_B));
  });

  it('serialForms: the id and its derived serial', () => {
    expect([...serialForms('short-id')]).toEqual(['short-id']);
    expect([...serialForms(LONG_A)]).toEqual([LONG_A, virtioBlkSerial(LONG_A)]);
  });

  it('finds a drive for a 64-character id by its truncated+hashed serial', async () => {
    expect((await devices().find(LONG_A, '/dev/vdz')).name).toBe('vda');
    expect((await devices().find(LONG_B)).name).toBe('vdb');
  });

  it('finds a short id as is', async () => {
    expect((await devices().lookup('short-id'))?.name).toBe('vdc');
  });

  it('a drive with an empty serial never matches by serial', async () => {
    expect(await devices().lookup('')).toBeUndefined();
  });

  it("the guest's own root drive is never found for a storage or device", async () => {
    expect(await devices().lookup(GUEST_ROOT_DRIVE_SERIAL)).toBeUndefined();
    await expect(devices().find(GUEST_ROOT_DRIVE_SERIAL, '/dev/vde')).rejects.toThrow(
      /no virtio-blk drive with serial "KATA_GUEST_ROOT"/,
    );
  });
});

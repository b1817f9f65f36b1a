// The event-loop port takes only virtio-serial ports: libuv aborts the whole process on a device
// it cannot poll, so anything else must be refused before it reaches libuv (the caller then falls
// back to blocking reads). The port itself is exercised in a real VM by the e2e layer.
import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openPollablePort } from '../../../src/agent/transport/pollable-port.js';

describe('openPollablePort', () => {
  it.each([
    ['/dev/urandom', /\/dev\/urandom is not a virtio-serial port \(mem\)/],
    ['/dev/null', /\/dev\/null is not a virtio-serial port \(mem\)/],
  ])('refuses %s, a character device of another kind', async (device, message) => {
    await expect(openPollablePort(device)).rejects.toThrow(message);
  });

  it('refuses a regular file', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pollable-port-'));
    try {
      const file = path.join(dir, 'vport0p1');
      writeFileSync(file, '');
      await expect(openPollablePort(file)).rejects.toThrow(/not a character device/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names a device that does not exist', async () => {
    await expect(openPollablePort('/dev/no-such-vport')).rejects.toThrow(/ENOENT/);
  });
});

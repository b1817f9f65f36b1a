import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SOCKET, parseCli } from '../../../src/agent/guest/cli.js';
import { AGENT_VERSION, guestDetails, parseBlockSize } from '../../../src/agent/guest/health.js';
import { findVirtioPort, waitForVirtioPort } from '../../../src/agent/guest/virtio-port.js';

describe('parseCli', () => {
  it('defaults to the guest paths', () => {
    expect(parseCli([], {})).toEqual({
      socketPath: DEFAULT_SOCKET,
      portName: 'agent.channel.0',
      portDevice: undefined,
      servePort: true,
      portWaitMs: 5000,
      portRelay: { path: '/usr/bin/kata-port-relay', required: false },
      logLevel: 'info',
      help: false,
      version: false,
    });
  });

  it('flags win over the environment', () => {
    const env = { KATA_AGENT_SOCKET: '/env.sock', KATA_AGENT_PORT_NAME: 'p', LOG_LEVEL: 'warn' };
    expect(parseCli([], env)).toMatchObject({
      socketPath: '/env.sock',
      portName: 'p',
      logLevel: 'warn',
    });
    expect(
      parseCli(['--socket', '/f.sock', '--no-port', '--port-device', '/dev/vport0p1'], env),
    ).toMatchObject({ socketPath: '/f.sock', servePort: false, portDevice: '/dev/vport0p1' });
  });

  it('takes the port relay from the flag or the environment; "off" drives the port directly', () => {
    expect(parseCli(['--port-relay', '/r'], {}).portRelay).toEqual({ path: '/r', required: true });
    expect(parseCli([], { KATA_AGENT_PORT_RELAY: 'off' }).portRelay).toBeUndefined();
    expect(() => parseCli(['--port-relay', 'rel'], {})).toThrow(/--port-relay "rel"/);
  });

  it('refuses unknown flags, relative sockets and bad numbers', () => {
    expect(() => parseCli(['--bogus'], {})).toThrow();
    expect(() => parseCli(['--socket', 'rel.sock'], {})).toThrow(/not absolute/);
    expect(() => parseCli(['--port-wait-ms', '-1'], {})).toThrow(/port-wait-ms/);
  });
});

describe('virtio port lookup', () => {
  let sys: string;
  beforeAll(() => {
    sys = mkdtempSync(path.join(tmpdir(), 'vports-'));
    for (const [port, name] of [
      ['vport0p0', 'other'],
      ['vport1p1', 'agent.channel.0'],
    ] as const) {
      mkdirSync(path.join(sys, port));
      writeFileSync(path.join(sys, port, 'name'), `${name}\n`);
    }
    mkdirSync(path.join(sys, 'vport2p0'));
  });
  afterAll(() => rmSync(sys, { recursive: true, force: true }));

  it('finds the port by name, not by number', async () => {
    expect(await findVirtioPort('agent.channel.0', { sysDir: sys })).toBe('/dev/vport1p1');
    expect(await findVirtioPort('nope', { sysDir: sys })).toBeUndefined();
    expect(await findVirtioPort('x', { sysDir: '/nonexistent' })).toBeUndefined();
    expect(await waitForVirtioPort('nope', 50, { sysDir: sys })).toBeUndefined();
  });
});

describe('health', () => {
  it("the embedded version is package.json's", () => {
    const pkgPath = path.resolve(
      path.dirname(fileURLToPath(import.meta.url)),
      '../../../package.json',
    );
    const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { version: string };
    expect(AGENT_VERSION).toBe(pkg.version);
  });

  it('parses the memory block size (hex) and reports 0 without the file', async () => {
    expect(parseBlockSize('8000000\n')).toBe(134217728);
    expect(parseBlockSize('zz')).toBeUndefined();
    const d = await guestDetails({ memBlockSize: true, memHotplugProbe: false }, '/nonexistent');
    expect(d.memBlockSizeBytes).toBe(0);
  });
});

import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  LineSplitter,
  QmpClient,
  QmpError,
  parseQmpLine,
  type QmpEvent,
} from '../../../src/node-agent/hypervisor/qmp-client.js';

const GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}';

describe('LineSplitter', () => {
  const stream =
    `${GREETING}\r\n{"return": {}, "id": "k1"}\r\n` +
    '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}\r\n' +
    '{"return": {"status": "running", "running": true, "desc": "é ✓"}, "id": "k2"}\n';
  const whole = new LineSplitter().push(stream);

  it('splits merged messages into lines and drops the CR', () => {
    expect(whole).toHaveLength(4);
    expect(whole.every((l) => !l.includes('\r'))).toBe(true);
    expect(parseQmpLine(whole[3] as string)).toMatchObject({ id: 'k2' });
  });

  it('gives the same lines when the bytes arrive split at every position', () => {
    const bytes = Buffer.from(stream, 'utf8');
    for (let cut = 1; cut < bytes.length; cut++) {
      const s = new LineSplitter();
      const lines = [...s.push(bytes.subarray(0, cut)), ...s.push(bytes.subarray(cut))];
      expect(lines).toEqual(whole);
      expect(s.pending).toBe('');
    }
  });

  it('gives the same lines one byte at a time (multi-byte characters included)', () => {
    const bytes = Buffer.from(stream, 'utf8');
    const s = new LineSplitter();
    const lines: string[] = [];
    for (const b of bytes) lines.push(...s.push(Buffer.from([b])));
    expect(lines).toEqual(whole);
  });

  it('keeps a partial line pending and refuses non-objects', () => {
    const s = new LineSplitter();
    expect(s.push('{"a":')).toEqual([]);
    expect(s.pending).toBe('{"a":');
    expect(s.push('1}\n')).toEqual(['{"a":1}']);
    expect(() => parseQmpLine('[1]')).toThrow(/non-object/);
    expect(() => parseQmpLine('nope')).toThrow();
  });
});

// A scripted QMP server on a unix socket: answers by command name, writes in tiny pieces.
let dir: string | undefined;
let server: net.Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

type Handler = (
  cmd: { execute: string; id?: string; arguments?: unknown },
  sock: net.Socket,
) => void;

async function fakeQmp(handler: Handler, greeting = GREETING): Promise<string> {
  dir = mkdtempSync(path.join(tmpdir(), 'qmp-'));
  const sockPath = path.join(dir, 'qmp.sock');
  server = net.createServer((sock) => {
    // Greeting written byte by byte: the client must reassemble it.
    for (const ch of `${greeting}\r\n`) sock.write(ch);
    const lines = new LineSplitter();
    sock.on('data', (d: Buffer) => {
      for (const l of lines.push(d)) handler(JSON.parse(l), sock);
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server!.listen(sockPath, r));
  return sockPath;
}

const reply = (sock: net.Socket, obj: unknown): boolean => sock.write(`${JSON.stringify(obj)}\r\n`);

describe('QmpClient', () => {
  it('handshakes, matches replies by id (out of order), surfaces events and errors', async () => {
    const seen: string[] = [];
    let heldStatus: (() => void) | undefined;
    const sockPath = await fakeQmp((cmd, sock) => {
      seen.push(cmd.execute);
      switch (cmd.execute) {
        case 'qmp_capabilities':
          reply(sock, { return: {}, id: cmd.id });
          break;
        case 'query-status':
          // Answer after the next command, to prove replies go by id, not order.
          heldStatus = () =>
            reply(sock, { return: { status: 'running', running: true }, id: cmd.id });
          break;
        case 'system_powerdown':
          // An event and the reply in one write, event first.
          sock.write(
            `{"event": "POWERDOWN", "timestamp": {"seconds": 1, "microseconds": 0}}\r\n${JSON.stringify({ return: {}, id: cmd.id })}\r\n`,
          );
          heldStatus?.();
          break;
        default:
          reply(sock, {
            error: {
              class: 'CommandNotFound',
              desc: `The command ${cmd.execute} has not been found`,
            },
            id: cmd.id,
          });
      }
    });
    const qmp = await QmpClient.connect(sockPath, { timeoutMs: 2_000 });
    expect(qmp.version).toEqual({ major: 7, minor: 2, micro: 0 });
    const events: QmpEvent[] = [];
    qmp.on('event', (e: QmpEvent) => events.push(e));
    const powerdownEvent = qmp.waitForEvent('POWERDOWN', { timeoutMs: 2_000 });
    const status = qmp.queryStatus();
    await qmp.systemPowerdown();
    await expect(status).resolves.toEqual({ status: 'running', running: true });
    await expect(powerdownEvent).resolves.toMatchObject({ event: 'POWERDOWN' });
    expect(events.map((e) => e.event)).toEqual(['POWERDOWN']);
    const err = await qmp.execute('nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect((err as QmpError).errorClass).toBe('CommandNotFound');
    expect(seen).toEqual(['qmp_capabilities', 'query-status', 'system_powerdown', 'nope']);
    qmp.close();
  });

  it('times out a command that gets no reply, and aborts on a signal', async () => {
    const sockPath = await fakeQmp((cmd, sock) => {
      if (cmd.execute === 'qmp_capabilities') reply(sock, { return: {}, id: cmd.id });
    });
    const qmp = await QmpClient.connect(sockPath, { timeoutMs: 2_000 });
    await expect(qmp.execute('query-status', undefined, { timeoutMs: 50 })).rejects.toThrow(
      /no reply within 50 ms/,
    );
    const ac = new AbortController();
    const p = qmp.execute('query-status', undefined, { signal: ac.signal });
    ac.abort(new Error('stop waiting'));
    await expect(p).rejects.toThrow('stop waiting');
    qmp.close();
  });

  it('treats quit as done when QEMU closes the socket before replying; pending calls fail on close', async () => {
    const sockPath = await fakeQmp((cmd, sock) => {
      if (cmd.execute === 'qmp_capabilities') reply(sock, { return: {}, id: cmd.id });
      if (cmd.execute === 'quit') sock.destroy();
    });
    const qmp = await QmpClient.connect(sockPath, { timeoutMs: 2_000 });
    const closed = new Promise((r) => qmp.once('close', r));
    await expect(qmp.quit({ timeoutMs: 2_000 })).resolves.toBeUndefined();
    await closed;
    expect(qmp.closed).toBe(true);
    await expect(qmp.queryStatus()).rejects.toThrow(/closed/);
    await expect(qmp.waitForEvent('SHUTDOWN')).rejects.toThrow(/closed/);
  });

  it('retries until the socket exists, and fails with a reason after the timeout', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'qmp-'));
    try {
      await expect(
        QmpClient.connect(path.join(d, 'absent.sock'), { timeoutMs: 150 }),
      ).rejects.toThrow(/within 150 ms/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('refuses a peer that does not greet with QMP', async () => {
    const sockPath = await fakeQmp(() => {}, '{"hello": 1}');
    await expect(QmpClient.connect(sockPath, { timeoutMs: 1_000 })).rejects.toThrow(
      /greeting expected/,
    );
  });
});

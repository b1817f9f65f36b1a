import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { encodeHeader } from '../../../src/agent/transport/yamux-frame.js';
import {
  INITIAL_STREAM_WINDOW,
  YamuxSession,
  YamuxStreamResetError,
  type YamuxStream,
} from '../../../src/agent/transport/yamux-session.js';
import { duplexPair, quiet, readAll, sha256, socketPair, tempDir, waitFor } from './helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
let sockets: Socket[] = [];
let sessions: YamuxSession[] = [];

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});

afterEach(async () => {
  for (const s of sessions) s.destroy();
  for (const s of sockets) s.destroy();
  sessions = [];
  sockets = [];
  await cleanup();
});

async function pair(onServerStream?: (s: YamuxStream) => void) {
  const [a, b] = await socketPair(dir);
  sockets.push(a, b);
  const client = new YamuxSession(a, { role: 'client' });
  const server = new YamuxSession(b, {
    role: 'server',
    onStream: (s) => onServerStream?.(quiet(s)),
  });
  client.on('stream', quiet);
  const open = client.open.bind(client);
  client.open = () => quiet(open());
  sessions.push(client, server);
  return { client, server, a, b };
}

const echo = (s: Duplex) => s.pipe(s);

/** Captures a stream's error (or that it closed without one). */
function closedWith(s: Duplex): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let err: Error | undefined;
    s.on('error', (e) => (err = e));
    s.on('close', () => resolve(err));
  });
}

describe('YamuxSession over a unix socket pair', () => {
  it('echoes 8 MiB intact (sha256) through one stream', async () => {
    const { client } = await pair(echo);
    const data = randomBytes(8 * 1024 * 1024);
    const s = client.open();
    const back = readAll(s);
    s.end(data);
    expect(sha256(await back)).toBe(sha256(data));
  });

  it('runs 100 concurrent streams, each echoing its own data', async () => {
    const { client, server } = await pair(echo);
    const payloads = Array.from({ length: 100 }, (_, i) =>
      Buffer.concat([Buffer.from(`stream ${i}:`), randomBytes(20_000 + i * 101)]),
    );
    const results = await Promise.all(
      payloads.map(async (p) => {
        const s = client.open();
        const back = readAll(s);
        // Two writes so frames of different streams interleave on the wire.
        s.write(p.subarray(0, 7000));
        s.end(p.subarray(7000));
        return back;
      }),
    );
    results.forEach((r, i) => expect(sha256(r)).toBe(sha256(payloads[i]!)));
    await waitFor(() => client.streamCount === 0 && server.streamCount === 0);
  });

  it('uses odd ids on the client, even on the server', async () => {
    let fromClient: YamuxStream | undefined;
    const { client, server } = await pair((s) => (fromClient ??= s));
    const fromServer = once(client, 'stream') as Promise<[YamuxStream]>;
    const c1 = client.open();
    const c2 = client.open();
    const s1 = quiet(server.open());
    s1.write('x');
    const [accepted] = await fromServer;
    c1.write('y');
    await waitFor(() => fromClient !== undefined);
    expect([c1.id, c2.id, s1.id, accepted.id, fromClient!.id]).toEqual([1, 3, 2, 2, 1]);
  });

  it('blocks a writer on the peer window instead of buffering (backpressure)', async () => {
    let slow: YamuxStream | undefined;
    const { client } = await pair((s) => (slow = s));
    const data = randomBytes(4 * 1024 * 1024);
    const s = client.open();
    let written = false;
    s.write(data, () => (written = true));
    s.end();
    await waitFor(() => slow !== undefined && s.peerWindow === 0);
    // The reader has not read: the peer holds at most one window, the rest waits on our side.
    expect(slow!.queuedBytes + slow!.readableLength).toBeLessThanOrEqual(INITIAL_STREAM_WINDOW);
    expect(written).toBe(false);
    const got = await readAll(slow!);
    expect(sha256(got)).toBe(sha256(data));
    expect(written).toBe(true);
  });

  it('keeps a slow reader within one window at every read', async () => {
    let slow: YamuxStream | undefined;
    const { client } = await pair((s) => (slow = s));
    const s = client.open();
    s.end(randomBytes(2 * 1024 * 1024));
    await waitFor(() => slow !== undefined);
    let total = 0;
    let maxHeld = 0;
    // Paused reads, one chunk per event-loop turn, so the peer outruns the reader.
    slow!.pause();
    for (;;) {
      await new Promise((r) => setImmediate(r));
      maxHeld = Math.max(maxHeld, slow!.queuedBytes + slow!.readableLength);
      const chunk = slow!.read() as Buffer | null;
      if (chunk) total += chunk.length;
      else if (slow!.readableEnded) break;
      else await Promise.race([once(slow!, 'readable'), once(slow!, 'end')]);
    }
    expect(total).toBe(2 * 1024 * 1024);
    // One window, plus at most one frame pushed past the readable high-water mark.
    expect(maxHeld).toBeLessThanOrEqual(
      INITIAL_STREAM_WINDOW + 64 * 1024 + slow!.readableHighWaterMark,
    );
  });

  it('half-closes: each side ends its direction independently', async () => {
    const { client, server } = await pair(async (s) => {
      const req = await readAll(s); // the client's FIN ends this
      s.end(Buffer.concat([Buffer.from('got '), req]));
    });
    const s = client.open();
    s.end('request');
    expect((await readAll(s)).toString()).toBe('got request');
    await waitFor(() => client.streamCount === 0 && server.streamCount === 0);
  });

  it('resets: the peer stream errors with a reset error', async () => {
    let remote: YamuxStream | undefined;
    const { client } = await pair((s) => (remote = s));
    const s = client.open();
    s.write('hello');
    await waitFor(() => remote !== undefined);
    const remoteClosed = closedWith(remote!);
    s.reset();
    const err = await remoteClosed;
    expect(err).toBeInstanceOf(YamuxStreamResetError);
    expect(err?.message).toBe('yamux stream 1 reset by peer');
  });

  it('destroying a stream mid-way resets it at the peer', async () => {
    const { client, server } = await pair((s) => s.destroy());
    const s = client.open();
    const closed = closedWith(s);
    s.write('x');
    expect(await closed).toBeInstanceOf(YamuxStreamResetError);
    await waitFor(() => server.streamCount === 0);
  });

  it('errors every stream promptly when the peer vanishes', async () => {
    const { client, b } = await pair(() => {});
    const streams = Array.from({ length: 5 }, () => client.open());
    // One of them is blocked on the window, so its pending write must fail, not hang.
    streams[0]!.write(randomBytes(1024 * 1024));
    await waitFor(() => streams[0]!.peerWindow === 0);
    const errors = Promise.all(streams.map(closedWith));
    const sessionClosed = once(client, 'close');
    b.destroy();
    const errs = await errors;
    for (const e of errs) expect(e?.message).toMatch(/^yamux session closed: /);
    const [why] = await sessionClosed;
    expect((why as Error | undefined)?.message).toMatch(/ECONNRESET|ended|closed/);
    expect(client.closed).toBe(true);
    expect(() => client.open()).toThrow(/yamux session closed/);
  });

  it('close() ends streams with an error and the peer session closes too', async () => {
    const { client, server } = await pair(() => {});
    const s = client.open();
    const closed = closedWith(s);
    const serverClosed = once(server, 'close');
    client.close();
    expect((await closed)?.message).toBe('yamux session closed: closed locally');
    await serverClosed;
  });

  it('go-away stops new streams from the receiver but keeps existing ones', async () => {
    let accepted = false;
    const { client, server } = await pair((s) => {
      accepted = true;
      echo(s);
    });
    const s = client.open();
    s.write('before');
    await waitFor(() => accepted);
    server.goAway();
    await client.ping(); // ordered after the go-away, so it has been seen
    expect(() => client.open()).toThrow(/go-away/);
    const back = readAll(s);
    s.end(' after');
    expect((await back).toString()).toBe('before after');
  });

  it('answers pings', async () => {
    const { client, server } = await pair();
    expect(await client.ping()).toBeGreaterThanOrEqual(0);
    expect(await server.ping()).toBeGreaterThanOrEqual(0);
  });

  it('keepalive closes a session whose peer stops answering pings', async () => {
    const [a] = duplexPair(); // nobody on the other end
    const session = new YamuxSession(a, {
      role: 'client',
      keepAliveIntervalMs: 10,
      keepAliveTimeoutMs: 10,
    });
    sessions.push(session);
    const [err] = await once(session, 'close');
    expect((err as Error).message).toMatch(/keepalive ping unanswered/);
  });

  it('keepalive leaves a responsive peer alone', async () => {
    const [a, b] = await socketPair(dir);
    sockets.push(a, b);
    let pings = 0;
    const pingSyn = Buffer.from('0002000100000000', 'hex');
    b.on('data', (c: Buffer) => c.includes(pingSyn) && pings++);
    const client = new YamuxSession(a, {
      role: 'client',
      keepAliveIntervalMs: 5,
      keepAliveTimeoutMs: 5000,
    });
    sessions.push(client, new YamuxSession(b, { role: 'server' }));
    await waitFor(() => pings >= 3);
    expect(client.closed).toBe(false);
  });

  it('closes on garbage with a protocol error', async () => {
    const { server, a } = await pair();
    const closed = once(server, 'close');
    a.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    const [err] = await closed;
    expect((err as Error).message).toMatch(/yamux protocol error: unsupported version 71/);
  });

  it('closes when the peer overruns the window', async () => {
    const { server, a } = await pair(() => {});
    const closed = once(server, 'close');
    a.write(encodeHeader({ type: 1, flags: 1, streamId: 1, length: 0 }));
    const big = INITIAL_STREAM_WINDOW + 1;
    a.write(encodeHeader({ type: 0, flags: 0, streamId: 1, length: big }));
    a.write(Buffer.alloc(big));
    const [err] = await closed;
    expect((err as Error).message).toMatch(/window/);
  });
});

describe('YamuxSession over a transport that delivers one byte at a time', () => {
  it('echoes across frames split at every byte', async () => {
    const [a, b] = duplexPair(1);
    const client = new YamuxSession(a, { role: 'client' });
    const server = new YamuxSession(b, { role: 'server', onStream: (s) => echo(quiet(s)) });
    sessions.push(client, server);
    const data = randomBytes(8_000);
    const streams = [quiet(client.open()), quiet(client.open()), quiet(client.open())];
    const backs = streams.map((s) => readAll(s));
    streams.forEach((s) => s.end(data));
    for (const back of backs) expect(sha256(await back)).toBe(sha256(data));
  });
});

import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { pipeDuplex } from '../../../src/agent/transport/duplex-pipe.js';
import { connectStreamToSocket } from '../../../src/agent/transport/stream-to-socket.js';
import { duplexPair, quiet, readAll, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

describe('pipeDuplex', () => {
  it('carries data both ways and propagates half-close', async () => {
    const [outerA, innerA] = duplexPair();
    const [innerB, outerB] = duplexPair();
    pipeDuplex(innerA, innerB);
    const atB = readAll(outerB);
    outerA.end('to b');
    expect((await atB).toString()).toBe('to b');
    // A's direction is closed, B's is still open.
    const atA = readAll(outerA);
    outerB.end('to a');
    expect((await atA).toString()).toBe('to a');
  });

  it('destroys the other side when one fails', async () => {
    const [, innerA] = duplexPair();
    const [innerB] = duplexPair();
    quiet(innerA);
    pipeDuplex(innerA, innerB);
    const closed = once(innerB, 'close');
    innerA.destroy(new Error('boom'));
    await closed;
    expect(innerB.destroyed).toBe(true);
  });
});

describe('connectStreamToSocket', () => {
  it('forwards a stream to a new connection on a unix socket, and back', async () => {
    const path = join(dir, 'server.sock');
    const server = createServer((sock: Socket) => sock.pipe(sock));
    server.listen(path);
    await once(server, 'listening');
    const [outer, inner] = duplexPair();
    connectStreamToSocket(inner, path);
    const back = readAll(outer);
    outer.end('round trip');
    expect((await back).toString()).toBe('round trip');
    server.close();
  });

  it('destroys the stream when the socket cannot be reached', async () => {
    const [, inner] = duplexPair();
    quiet(inner);
    const closed = once(inner, 'close');
    connectStreamToSocket(inner, join(dir, 'nobody-listens.sock'));
    await closed;
    expect(inner.destroyed).toBe(true);
  });
});

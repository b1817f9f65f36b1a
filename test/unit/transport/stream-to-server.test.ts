import { afterEach, describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { connectStreamToServer } from '../../../src/agent/transport/stream-to-server.js';
import { duplexPair, quiet } from './helpers.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** An HTTP/2 server fed by connectStreamToServer, and a client on the stream's other end. */
function connected(handler: (s: http2.ServerHttp2Stream) => void) {
  const server = http2.createServer();
  server.on('stream', handler);
  const [outer, inner] = duplexPair();
  let conn: Duplex | undefined;
  connectStreamToServer(inner, (c) => {
    conn = c;
    server.emit('connection', c);
  });
  const chunks: Buffer[] = [];
  outer.on('data', (c: Buffer) => chunks.push(c));
  const client = http2.connect('http://agent', { createConnection: () => outer });
  quiet(client as never);
  cleanups.push(() => {
    client.destroy();
    conn?.destroy();
  });
  return { outer, inner, client, chunks, conn: () => conn! };
}

/** [type, stream id] of every HTTP/2 frame in a chunk the client side received. */
function frames(chunk: Buffer): [number, number][] {
  const out: [number, number][] = [];
  for (let off = 0; off + 9 <= chunk.length;) {
    const len = chunk.readUIntBE(off, 3);
    out.push([chunk[off + 3]!, chunk.readUInt32BE(off + 5) & 0x7fffffff]);
    off += 9 + len;
  }
  return out;
}

async function get(client: http2.ClientHttp2Session): Promise<{ status: number; body: string }> {
  const req = client.request({ ':path': '/ping' });
  const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
  let body = '';
  req.setEncoding('utf8');
  for await (const c of req) body += c as string;
  return { status: Number(headers[':status']), body };
}

describe('connectStreamToServer', () => {
  it('serves a request on the stream and answers on it', async () => {
    const { client } = connected((s) => {
      s.respond({ ':status': 200 });
      s.end('pong');
    });
    expect(await get(client)).toEqual({ status: 200, body: 'pong' });
  });

  it("writes an answer's HEADERS and DATA to the stream at once (one yamux frame, not one per HTTP/2 frame)", async () => {
    const { client, chunks } = connected((s) => {
      s.respond({ ':status': 200 });
      s.end('pong');
    });
    await get(client);
    const answer = chunks.find((c) => frames(c).some(([t, id]) => t === 0x1 && id === 1));
    expect(answer).toBeDefined();
    expect(frames(answer!)).toEqual(
      expect.arrayContaining([
        [0x1, 1],
        [0x0, 1],
      ]),
    );
  });

  it("ends the server's connection when the stream breaks", async () => {
    const { client, inner, conn } = connected((s) => {
      s.respond({ ':status': 200 });
      s.end('pong');
    });
    await get(client);
    const closed = once(conn(), 'close');
    inner.destroy(new Error('stream reset by the host'));
    await closed;
    expect(conn().destroyed).toBe(true);
  });

  it('ends the stream when what the host sends is not HTTP/2', async () => {
    const server = http2.createServer();
    const [outer, inner] = duplexPair();
    quiet(inner);
    quiet(outer);
    let conn: Duplex | undefined;
    connectStreamToServer(inner, (c) => {
      conn = c;
      server.emit('connection', c);
    });
    cleanups.push(() => conn?.destroy());
    const closed = once(inner, 'close');
    outer.write(Buffer.from('GET / HTTP/1.1\r\nHost: agent\r\n\r\n'));
    await closed;
    expect(inner.destroyed).toBe(true);
  });
});

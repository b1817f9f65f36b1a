// Node's own HTTP/2 client (nghttp2's encoder: Huffman, dynamic table, evictions) talks to Node's
// HTTP/2 server through a relay; with the AuthorityRewriter on the client-to-server half, an
// authority Node's server resets streams for (the Kata 1.x client's `unix:///…`) is accepted.
import { afterEach, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuthorityRewriter, safeAuthority } from '../../../src/agent/transport/h2-authority.js';

const KATA1_AUTHORITY = 'unix:///run/vc/vm/sandbox/agent-channel.sock';
const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((f) => f()));

interface Seen {
  authority: string;
  headers: http2.IncomingHttpHeaders;
}

/** An HTTP/2 server on a unix socket, and a relay socket in front of it (rewriting or not). */
async function serverBehindRelay(
  rewrite: boolean,
  taps?: { in: Buffer[]; out: Buffer[] },
): Promise<{ relay: string; seen: Seen[] }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'h2-authority-'));
  const seen: Seen[] = [];
  const h2 = http2.createServer();
  h2.on('stream', (stream, headers) => {
    seen.push({ authority: String(headers[':authority']), headers });
    stream.respond({ ':status': 200 });
    stream.end(String(headers['x-n']));
  });
  const serverPath = path.join(dir, 'server.sock');
  h2.listen(serverPath);
  await once(h2, 'listening');
  const relay: Server = createServer((client) => {
    const server = connect(serverPath);
    if (rewrite) {
      const rewriter = new AuthorityRewriter();
      if (taps) {
        client.on('data', (c: Buffer) => taps.in.push(c));
        rewriter.on('data', (c: Buffer) => taps.out.push(c));
      }
      client.pipe(rewriter).pipe(server);
    } else client.pipe(server);
    server.pipe(client);
    client.on('error', () => server.destroy());
    server.on('error', () => client.destroy());
  });
  const relayPath = path.join(dir, 'relay.sock');
  relay.listen(relayPath);
  await once(relay, 'listening');
  cleanups.push(() => {
    relay.close();
    h2.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { relay: relayPath, seen };
}

function request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: true });
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function clientTo(socketPath: string): http2.ClientHttp2Session {
  const session = http2.connect('http://localhost', {
    createConnection: () => connect(socketPath),
  });
  session.on('error', () => {});
  cleanups.unshift(() => session.destroy());
  return session;
}

describe('AuthorityRewriter', () => {
  it("without it, Node's HTTP/2 server resets a stream whose authority has a '/'", async () => {
    const { relay } = await serverBehindRelay(false);
    const session = clientTo(relay);
    await expect(request(session, { ':authority': KATA1_AUTHORITY, 'x-n': '1' })).rejects.toThrow(
      /PROTOCOL_ERROR|NGHTTP2_PROTOCOL_ERROR|Stream closed with error code/,
    );
  });

  it('with it, every request arrives: the authority percent-encoded, other headers intact', async () => {
    const { relay, seen } = await serverBehindRelay(true);
    const session = clientTo(relay);
    // Varying values of varying sizes fill the 4 KiB dynamic table many times over (evictions),
    // and repeated ones come back as indexed references.
    const sent: string[] = [];
    for (let n = 0; n < 200; n++) {
      const varying = randomBytes(1 + (n % 97)).toString('base64');
      sent.push(varying);
      const body = await request(session, {
        ':method': 'POST',
        ':path': `/grpc.AgentService/Call${n % 7}`,
        ':authority': KATA1_AUTHORITY,
        'x-n': String(n),
        'x-varying': varying,
        'x-big': 'b'.repeat(n % 5 === 0 ? 5000 : 10),
      });
      expect(body).toBe(String(n));
    }
    expect(seen).toHaveLength(200);
    seen.forEach((s, n) => {
      expect(s.authority).toBe('unix:%2F%2F%2Frun%2Fvc%2Fvm%2Fsandbox%2Fagent-channel.sock');
      expect(s.headers[':path']).toBe(`/grpc.AgentService/Call${n % 7}`);
      expect(s.headers['x-varying']).toBe(sent[n]);
      expect(s.headers['x-big']).toHaveLength(n % 5 === 0 ? 5000 : 10);
    });
  });

  it("passes a connection whose first authority is valid byte for byte: the server decodes every block with the client's own table", async () => {
    const taps = { in: [] as Buffer[], out: [] as Buffer[] };
    const { relay, seen } = await serverBehindRelay(true, taps);
    const session = clientTo(relay);
    const sent: string[] = [];
    for (let n = 0; n < 60; n++) {
      const varying = randomBytes(1 + (n % 97)).toString('base64');
      sent.push(varying);
      const body = await request(session, {
        ':method': 'POST',
        ':path': `/grpc.health.v1.Health/Check${n % 3}`,
        'x-n': String(n),
        'x-varying': varying,
      });
      expect(body).toBe(String(n));
    }
    seen.forEach((s, n) => {
      expect(s.authority).toBe('localhost:80');
      expect(s.headers['x-varying']).toBe(sent[n]);
    });
    expect(Buffer.concat(taps.out).equals(Buffer.concat(taps.in))).toBe(true);
  });

  it('keeps rewriting a connection whose first authority it rewrote, valid ones after it too', async () => {
    const { relay, seen } = await serverBehindRelay(true);
    const session = clientTo(relay);
    const authorities = [KATA1_AUTHORITY, 'localhost', KATA1_AUTHORITY, 'agent:1'];
    for (const [n, a] of authorities.entries()) {
      expect(await request(session, { ':authority': a, 'x-n': String(n) })).toBe(String(n));
    }
    expect(seen.map((s) => s.authority)).toEqual(authorities.map(safeAuthority));
  });

  it('on a connection it passes, a later authority the server refuses costs only that stream', async () => {
    const { relay } = await serverBehindRelay(true);
    const session = clientTo(relay);
    expect(await request(session, { 'x-n': '1' })).toBe('1');
    await expect(request(session, { ':authority': KATA1_AUTHORITY, 'x-n': '2' })).rejects.toThrow(
      /PROTOCOL_ERROR|Stream closed with error code/,
    );
    expect(await request(session, { 'x-n': '3' })).toBe('3');
  });

  it('leaves a valid authority as it is and refuses a stream that is not HTTP/2', async () => {
    expect(safeAuthority('localhost:8080')).toBe('localhost:8080');
    expect(safeAuthority('[::1]:1')).toBe('[::1]:1');
    const r = new AuthorityRewriter();
    const failed = once(r, 'error');
    r.end(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await expect(failed).resolves.toEqual([
      expect.objectContaining({ message: expect.stringMatching(/preface/) }),
    ]);
  });
});

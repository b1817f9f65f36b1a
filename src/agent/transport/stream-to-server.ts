// Each yamux stream from the host becomes one HTTP/2 connection of the agent's grpc-js server,
// handed to it in-process (grpc-js's connection injector): no loopback socket between the port
// and the server, so a call costs the guest no extra socket writes, reads and wake-ups (under TCG
// every one of them is paid ~30×). What the host sends passes through the AuthorityRewriter on the
// way (any client's `:authority` reaches the server as one Node accepts; see h2-authority.ts).
import { ServerCredentials, type Server } from '@grpc/grpc-js';
import { Duplex, finished } from 'node:stream';
import { AuthorityRewriter } from './h2-authority.js';

/**
 * The server's side of one stream: reads what the host sent (rewritten), writes to the stream.
 * Node's HTTP/2 corks its connection around the frames of one write (an answer's HEADERS, DATA
 * header and payload); `_writev` sends them as one yamux frame instead of one frame each.
 */
class ServerConnection extends Duplex {
  constructor(
    private readonly stream: Duplex,
    private readonly fromHost: AuthorityRewriter,
  ) {
    super({ allowHalfOpen: true });
    fromHost.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) fromHost.pause();
    });
    fromHost.once('end', () => this.push(null));
  }

  override _read(): void {
    this.fromHost.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.stream.write(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.stream.write(Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.stream.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.fromHost.destroy();
    this.stream.destroy();
    cb(err);
  }
}

/** Hands `stream` to `inject` as one connection: the host's bytes rewritten, the server's as they are. */
export function connectStreamToServer(stream: Duplex, inject: (conn: Duplex) => void): void {
  const fromHost = new AuthorityRewriter();
  stream.pipe(fromHost);
  const conn = new ServerConnection(stream, fromHost);
  // A reset or broken stream ends the server's connection; a malformed request stream ends the
  // stream (the server could not have parsed it either).
  finished(stream, (err) => {
    if (err && !conn.destroyed) conn.destroy();
  });
  finished(fromHost, (err) => {
    if (err && !stream.destroyed) stream.destroy();
  });
  inject(conn);
}

/** An `onStream` callback that serves every stream on `server`. */
export function serveStreamsOn(server: Server): (stream: Duplex) => void {
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  return (stream) => connectStreamToServer(stream, (conn) => injector.injectConnection(conn));
}

import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex, type Readable } from 'node:stream';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { PortIo } from '../../../src/agent/transport/port-io.js';

export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'kso-transport-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Two connected unix sockets (a real kernel socket pair, as in production). */
export async function socketPair(dir: string): Promise<[Socket, Socket]> {
  const path = join(dir, `pair-${randomBytes(4).toString('hex')}.sock`);
  const server = createServer({ allowHalfOpen: true });
  server.listen(path);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const a = connect({ path, allowHalfOpen: true });
  const [[b]] = await Promise.all([accepted, once(a, 'connect')]);
  server.close();
  return [a, b];
}

/** An in-memory duplex pair that re-cuts every write into `chunkSize`-byte pieces. */
export function duplexPair(chunkSize = Infinity): [Duplex, Duplex] {
  const make = (): Duplex & { peer?: Duplex } =>
    new Duplex({
      allowHalfOpen: true,
      read() {},
      write(chunk: Buffer, _enc, cb) {
        const peer = (this as Duplex & { peer?: Duplex }).peer!;
        for (let i = 0; i < chunk.length; i += chunkSize) {
          peer.push(chunk.subarray(i, Math.min(chunk.length, i + chunkSize)));
        }
        cb();
      },
      final(cb) {
        (this as Duplex & { peer?: Duplex }).peer!.push(null);
        cb();
      },
    });
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Reads to the end without destroying the stream (for-await would, killing a Duplex's writer). */
export function readAll(r: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    r.on('data', (c: Buffer) => parts.push(c));
    r.once('end', () => resolve(Buffer.concat(parts)));
    r.once('error', reject);
  });
}

/** Streams a test leaves open get errored when its sessions are torn down; that's expected. */
export function quiet<T extends Readable>(s: T): T {
  s.on('error', () => {});
  return s;
}

/** Waits for a condition by yielding to the event loop; Jest's timeout bounds it. */
export async function waitFor(cond: () => boolean): Promise<void> {
  while (!cond()) await yieldToLoop();
}

/**
 * The virtio-serial port as the guest sees it: while no host is connected, read() returns 0 at
 * once; while one is, read() waits for its data; when it disconnects, a pending read returns 0.
 * Guest writes go to the connected host (and are dropped when none is).
 */
export class FakePort implements PortIo {
  private host: Duplex | undefined;
  private queue: Buffer[] = [];
  private pending: ((n: number) => void) | undefined;
  private pendingBuf: Buffer | undefined;
  eofReads = 0;

  /** Connects a host; returns the host's end of the byte stream. */
  connectHost(hostEnd: Duplex): void {
    this.host = hostEnd;
    this.queue = [];
    hostEnd.on('data', (c: Buffer) => {
      if (this.host !== hostEnd) return;
      this.queue.push(c);
      this.flush();
    });
    const gone = () => {
      if (this.host === hostEnd) this.disconnectHost();
    };
    hostEnd.on('end', gone);
    hostEnd.on('close', gone);
    hostEnd.on('error', gone);
  }

  disconnectHost(): void {
    const h = this.host;
    this.host = undefined;
    this.queue = [];
    h?.destroy();
    this.flush();
  }

  get hostConnected(): boolean {
    return this.host !== undefined;
  }

  read(buf: Buffer): Promise<number> {
    if (this.pending) throw new Error('FakePort: concurrent reads');
    return new Promise<number>((resolve) => {
      this.pending = resolve;
      this.pendingBuf = buf;
      this.flush();
    });
  }

  async write(buf: Buffer): Promise<void> {
    if (this.host && !this.host.destroyed) this.host.write(Buffer.from(buf));
  }

  async close(): Promise<void> {}

  private flush(): void {
    const resolve = this.pending;
    const buf = this.pendingBuf;
    if (!resolve || !buf) return;
    if (!this.host) {
      this.pending = undefined;
      this.eofReads++;
      resolve(0);
      return;
    }
    const head = this.queue[0];
    if (!head) return;
    const n = Math.min(head.length, buf.length);
    head.copy(buf, 0, 0, n);
    if (n === head.length) this.queue.shift();
    else this.queue[0] = head.subarray(n);
    this.pending = undefined;
    resolve(n);
  }
}

// Guest side of the agent channel: the virtio-serial port as it really behaves. While no host is
// connected to the chardev, reads return 0 bytes at once, again and again; when a host connects,
// data flows. A host that goes away and comes back (node agent restart) shows up only as "EOF,
// later data again", so EOF after data means the host is gone: the session ends, and the next
// data starts a fresh server session (the new host numbers its streams from 1 again).
import { open } from 'node:fs/promises';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { YamuxSession, type YamuxSessionOptions, type YamuxStream } from './yamux-session.js';

/** The port's byte I/O; injectable so the loop can be tested without a device. */
export interface PortIo {
  /** Fills `buf` from the start; 0 means end of file (no host connected). */
  read(buf: Buffer): Promise<number>;
  /** Writes all of `buf`. */
  write(buf: Buffer): Promise<void>;
  close(): Promise<void>;
}

export interface ServePortOptions {
  /** Sleep between reads that return EOF. Default 20 ms. */
  eofPollMs?: number;
  readBufferSize?: number;
  sessionOptions?: Omit<YamuxSessionOptions, 'role' | 'onStream'>;
  /** For logging: a session began (host connected) or ended (host went away, or an error). */
  onSessionStart?: (session: YamuxSession) => void;
  onSessionEnd?: (err: Error | undefined) => void;
}

/** Opens the character device read/write. Blocking reads run on libuv's thread pool. */
export async function openPort(path: string): Promise<PortIo> {
  const fh = await open(path, 'r+');
  return {
    read: async (buf) => (await fh.read(buf, 0, buf.length, null)).bytesRead,
    write: async (buf) => {
      let off = 0;
      while (off < buf.length)
        off += (await fh.write(buf, off, buf.length - off, null)).bytesWritten;
    },
    close: () => fh.close(),
  };
}

/**
 * Serves yamux streams from the port at `path` until `signal` aborts; each stream the host opens
 * is passed to `onStream` (see stream-to-socket.ts to hand it to a grpc-js server).
 */
export async function servePort(
  path: string,
  onStream: (stream: YamuxStream) => void,
  signal: AbortSignal,
  options: ServePortOptions = {},
): Promise<void> {
  const io = await openPort(path);
  try {
    await servePortIo(io, onStream, signal, options);
  } finally {
    // A read blocked in the kernel holds the handle; don't wait for it on the way out. A close
    // that fails leaves nothing to undo: the port is done with either way.
    io.close().catch(() => {});
  }
}

export async function servePortIo(
  io: PortIo,
  onStream: (stream: YamuxStream) => void,
  signal: AbortSignal,
  options: ServePortOptions = {},
): Promise<void> {
  const pollMs = options.eofPollMs ?? 20;
  const buf = Buffer.allocUnsafe(options.readBufferSize ?? 64 * 1024);
  const writer = new SerialWriter(io);
  let conn: PortConnection | undefined;
  let hostConnected = false;
  const aborted = new Promise<'aborted'>((resolve) => {
    if (signal.aborted) resolve('aborted');
    signal.addEventListener('abort', () => resolve('aborted'), { once: true });
  });

  try {
    while (!signal.aborted) {
      if (conn && !conn.destroyed) {
        if ((await Promise.race([conn.whenWanted(), aborted])) === 'aborted') break;
      }
      const n = await Promise.race([io.read(buf), aborted]);
      if (n === 'aborted') break;
      if (n === 0) {
        if (hostConnected) {
          hostConnected = false;
          writer.newHost();
          conn?.hostGone();
          conn = undefined;
        }
        if ((await Promise.race([sleep(pollMs), aborted])) === 'aborted') break;
        continue;
      }
      hostConnected = true;
      // Also after a session died on a protocol error: the next bytes start a fresh one.
      if (!conn || conn.destroyed) {
        conn = new PortConnection(writer);
        const session = new YamuxSession(conn, {
          ...options.sessionOptions,
          role: 'server',
          onStream,
        });
        session.once('close', (err) => options.onSessionEnd?.(err));
        options.onSessionStart?.(session);
      }
      conn.deliver(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    conn?.destroy();
  }
}

/** One session's view of the port: reads fed by the loop, writes queued on the shared writer. */
class PortConnection extends Duplex {
  private wantsData = true;
  private waiter: (() => void) | undefined;

  constructor(private readonly writer: SerialWriter) {
    super({ allowHalfOpen: false });
  }

  /** Resolves when the session wants more bytes (read backpressure). */
  whenWanted(): Promise<void> {
    if (this.wantsData || this.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => (this.waiter = resolve));
  }

  deliver(chunk: Buffer): void {
    this.wantsData = this.push(chunk);
  }

  hostGone(): void {
    if (!this.destroyed) this.push(null);
    this.destroy();
  }

  override _read(): void {
    this.wantsData = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    // Handed to the writer at once, so frames written just before the session is destroyed (a
    // protocol-error go-away) still go out; yamux windows bound what can queue there.
    this.writer.write(chunk).catch((err: Error) => this.destroy(err));
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this._read();
    cb(err);
  }
}

/**
 * Serialises writes from every session so frames never interleave, and drops what was queued
 * for a host that has since gone away: those bytes would reach the next host as garbage. (A
 * write already blocked in the kernel when the host left can't be recalled; the next host then
 * sees a protocol error, reconnects, and the guest, reading EOF meanwhile, starts afresh.)
 */
class SerialWriter {
  private chain: Promise<void> = Promise.resolve();
  private host = 0;

  constructor(private readonly io: PortIo) {}

  newHost(): void {
    this.host++;
  }

  write(buf: Buffer): Promise<void> {
    const host = this.host;
    const next = this.chain.then(() => (host !== this.host ? undefined : this.io.write(buf)));
    this.chain = next.catch(() => {});
    return next;
  }
}

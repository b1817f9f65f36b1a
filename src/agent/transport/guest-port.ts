// Guest side of the agent channel: the virtio-serial port as it really behaves. While no host is
// connected to the chardev, reads return 0 bytes at once, again and again; when a host connects,
// data flows. A host that goes away and comes back (node agent restart) shows up as "EOF, later
// data again", so EOF after data means the host is gone: the session ends, and the next data
// starts a fresh server session (the new host numbers its streams from 1 again). A host that
// comes back within milliseconds may show no EOF at all; the demux (host-session-demux.ts) then
// finds the new session from its frames. Either way nothing the old session still writes goes out.
import { open } from 'node:fs/promises';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostSessionDemux } from './host-session-demux.js';
import { FrameType, GoAwayCode, YamuxProtocolError, encodeFrame } from './yamux-frame.js';
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
  /** For logging: why the live session was cut (a new host session seen in the frames, garbage). */
  onSessionBoundary?: (reason: string) => void;
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
 * is passed to `onStream` (see stream-to-server.ts to hand it to a grpc-js server).
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
  const demux = new HostSessionDemux();
  let conn: PortConnection | undefined;
  let hostConnected = false;
  const aborted = new Promise<'aborted'>((resolve) => {
    if (signal.aborted) resolve('aborted');
    signal.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
  /** Ends the live session; whatever it still had queued for the host is dropped. */
  const endSession = (): void => {
    writer.nextSession();
    conn?.hostGone();
    conn = undefined;
  };
  const startSession = (): PortConnection => {
    const c = new PortConnection(writer);
    const session = new YamuxSession(c, { ...options.sessionOptions, role: 'server', onStream });
    session.once('close', (err) => {
      // A session that failed on its own (it told the host with a go-away) takes no more
      // frames of that host: the demux waits for the next host session.
      if (err instanceof YamuxProtocolError && conn === c) demux.sessionFailed();
      options.onSessionEnd?.(err);
    });
    options.onSessionStart?.(session);
    return c;
  };

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
          demux.hostGone();
          endSession();
        }
        if ((await Promise.race([sleep(pollMs), aborted])) === 'aborted') break;
        continue;
      }
      hostConnected = true;
      for (const ev of demux.push(Buffer.from(buf.subarray(0, n)))) {
        if (ev.kind === 'frames') {
          // Also after a session died on a protocol error: the next frames start a fresh one.
          if (!conn || conn.destroyed) conn = startSession();
          conn.deliver(ev.bytes);
          continue;
        }
        options.onSessionBoundary?.(ev.reason);
        if (ev.kind === 'garbage') writer.write(PROTOCOL_ERROR_GO_AWAY).catch(noop);
        endSession();
      }
    }
  } finally {
    conn?.destroy();
  }
}

const PROTOCOL_ERROR_GO_AWAY = encodeFrame({
  type: FrameType.GoAway,
  flags: 0,
  streamId: 0,
  length: GoAwayCode.ProtocolError,
});

// A failed write is the port going away; the read loop finds that out on its own.
const noop = (): void => {};

/** One session's view of the port: reads fed by the loop, writes queued on the shared writer. */
class PortConnection extends Duplex {
  private wantsData = true;
  private waiter: (() => void) | undefined;
  /** The writer's session this connection belongs to; its writes are dropped once that ends. */
  private readonly session: number;

  constructor(private readonly writer: SerialWriter) {
    super({ allowHalfOpen: false });
    this.session = writer.session;
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
    this.writer.write(chunk, this.session).catch((err: Error) => this.destroy(err));
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this._read();
    cb(err);
  }
}

/**
 * Serialises writes from every session so frames never interleave, and drops what a session
 * queued once it has ended: those bytes would reach the next host as garbage. (A write already
 * blocked in the kernel when the host left can't be recalled; the host side discards whatever
 * arrives before the answer to its opening ping, see serial-bridge.ts.)
 */
class SerialWriter {
  private chain: Promise<void> = Promise.resolve();
  /** Numbers host sessions; a write carries the number of the session that made it. */
  session = 0;

  constructor(private readonly io: PortIo) {}

  nextSession(): void {
    this.session++;
  }

  /** Queues `buf`; with `session`, only if that session is still the current one by then. */
  write(buf: Buffer, session?: number): Promise<void> {
    const stale = () => session !== undefined && session !== this.session;
    const next = this.chain.then(() => (stale() ? undefined : this.io.write(buf)));
    this.chain = next.catch(() => {});
    return next;
  }
}

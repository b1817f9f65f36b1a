// Host side of the agent channel. QEMU serves the virtio-serial port `agent.channel.0` on a unix
// socket (server=on,wait=off) and accepts one client at a time; we are that client and run a
// yamux client session over it. grpc-js dials a per-sandbox unix socket we listen on; each of
// its connections becomes one yamux stream. Every connection starts with the opening of
// session-opening.ts, and the session only sees the guest's bytes after the opening's answer,
// so nothing written for an earlier connection reaches this one.
import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { lstat, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { pipeDuplex } from './duplex-pipe.js';
import {
  FIRST_STREAM_AFTER_OPENING,
  OpeningAnswerScanner,
  sessionOpening,
} from './session-opening.js';
import { YamuxSession, type YamuxSessionOptions } from './yamux-session.js';

export interface SerialBridgeOptions {
  /** QEMU's chardev socket for the agent port. */
  chardevPath: string;
  /** The unix socket grpc-js dials; a stale socket file there is replaced. */
  listenPath: string;
  /**
   * Per connect attempt; also how long a grpc connection waits for the chardev and the guest's
   * answer to the opening. Default 5 s.
   */
  connectTimeoutMs?: number;
  /** First delay between reconnect attempts (doubles up to maxRetryDelayMs). Default 50 ms. */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /**
   * How long the guest has to answer the opening before it is sent again on the same connection
   * (doubling up to 8x; the guest may still be booting). Default 500 ms.
   */
  openingRetryMs?: number;
  signal?: AbortSignal;
  /** For logging: a connection's opening was answered, after `staleBytes` were thrown away. */
  onOpened?: (info: { staleBytes: number; openings: number }) => void;
  sessionOptions?: Omit<YamuxSessionOptions, 'role' | 'onStream'>;
}

export class SerialBridge extends EventEmitter<{
  connected: [];
  disconnected: [Error | undefined];
}> {
  private session: YamuxSession | undefined;
  private closing = false;
  private readonly stop = new AbortController();
  private readonly signal: AbortSignal;
  private readonly clients = new Set<Socket>();
  private loop: Promise<void> = Promise.resolve();
  private lastError: Error | undefined;

  private constructor(
    readonly options: SerialBridgeOptions,
    private readonly server: Server,
  ) {
    super();
    this.signal = options.signal
      ? AbortSignal.any([options.signal, this.stop.signal])
      : this.stop.signal;
  }

  /** Listens on `listenPath` and starts (re)connecting to the chardev in the background. */
  static async start(options: SerialBridgeOptions): Promise<SerialBridge> {
    options.signal?.throwIfAborted();
    await removeStaleSocket(options.listenPath);
    const server = createServer({ allowHalfOpen: true });
    const bridge = new SerialBridge(options, server);
    // A session that closes as a client arrives: drop the client, grpc-js dials again.
    server.on('connection', (sock) => {
      bridge.onClient(sock).catch(() => sock.destroy());
    });
    server.listen(options.listenPath);
    await once(server, 'listening');
    bridge.loop = bridge.run();
    // Nobody awaits a close on abort: a socket file it failed to remove is replaced at the next
    // start (removeStaleSocket), and a caller of close() meets the same failure.
    bridge.signal.addEventListener('abort', () => bridge.close().catch(() => {}), { once: true });
    return bridge;
  }

  get connected(): boolean {
    return this.session !== undefined && !this.session.closed;
  }

  /** Resolves once a session with the guest port is up. */
  async waitConnected(timeoutMs = this.connectTimeout): Promise<YamuxSession> {
    if (this.session && !this.session.closed) return this.session;
    const signal = AbortSignal.any([this.signal, AbortSignal.timeout(timeoutMs)]);
    try {
      await once(this, 'connected', { signal });
    } catch {
      const why = this.closing ? 'bridge closed' : `not connected after ${timeoutMs} ms`;
      const last = this.lastError ? ` (last error: ${this.lastError.message})` : '';
      throw new Error(`serial bridge to ${this.options.chardevPath}: ${why}${last}`);
    }
    if (!this.session) throw new Error('serial bridge: session vanished');
    return this.session;
  }

  /** Stops reconnecting, closes every connection and removes the listening socket. */
  async close(): Promise<void> {
    if (this.closing) return this.loop;
    this.closing = true;
    this.stop.abort();
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.clients) c.destroy();
    this.session?.close();
    await serverClosed;
    await this.loop;
    await rm(this.options.listenPath, { force: true });
  }

  private get connectTimeout(): number {
    return this.options.connectTimeoutMs ?? 5000;
  }

  private async onClient(sock: Socket): Promise<void> {
    this.clients.add(sock);
    sock.on('close', () => this.clients.delete(sock));
    sock.on('error', () => {});
    let session: YamuxSession;
    try {
      session = await this.waitConnected();
    } catch {
      sock.destroy();
      return;
    }
    if (sock.destroyed) return;
    pipeDuplex(sock, session.open());
  }

  private open(sock: Socket): Promise<boolean> {
    return openConnection(
      sock,
      this.signal,
      this.options.openingRetryMs ?? 500,
      this.options.onOpened,
    );
  }

  private async run(): Promise<void> {
    const base = this.options.retryDelayMs ?? 50;
    const max = this.options.maxRetryDelayMs ?? 1000;
    let delay = base;
    while (!this.signal.aborted) {
      let sock: Socket;
      try {
        sock = await connectUnix(this.options.chardevPath, this.connectTimeout, this.signal);
      } catch (err) {
        this.lastError = err as Error;
        if (!(await pause(delay, this.signal))) break;
        delay = Math.min(delay * 2, max);
        continue;
      }
      delay = base;
      let opened: boolean;
      this.lastError = undefined;
      try {
        opened = await this.open(sock);
      } catch (err) {
        this.lastError = err as Error;
        opened = false;
      }
      if (!opened) {
        if (!this.signal.aborted && this.lastError === undefined) {
          this.lastError = new Error('the chardev closed before the guest answered the opening');
        }
        sock.destroy();
        if (!(await pause(base, this.signal))) break;
        continue;
      }
      const session = new YamuxSession(sock, {
        ...this.options.sessionOptions,
        role: 'client',
        firstStreamId: FIRST_STREAM_AFTER_OPENING,
      });
      sock.resume();
      // The guest only answers; a stream it opens is not ours to serve.
      session.on('stream', (s) => s.reset());
      const closed = once(session, 'close') as Promise<[Error | undefined]>;
      this.session = session;
      this.emit('connected');
      const [err] = await closed;
      this.session = undefined;
      this.lastError = err;
      this.emit('disconnected', err);
      // A pause so a chardev that accepts and drops at once doesn't make us spin.
      if (!(await pause(base, this.signal))) break;
    }
  }
}

/**
 * Sends the opening and waits for its answer, sending it again (new ping id) while none comes.
 * True once answered: the socket is paused with the bytes after the answer unshifted, for the
 * session to read first. False when the socket closed or the bridge stopped first.
 */
function openConnection(
  sock: Socket,
  signal: AbortSignal,
  retryMs: number,
  onOpened?: SerialBridgeOptions['onOpened'],
): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const scanner = new OpeningAnswerScanner();
    let openings = 0;
    let timer: NodeJS.Timeout | undefined;
    const send = (wait: number): void => {
      const pingId = randomBytes(4).readUInt32BE(0);
      scanner.expect(pingId);
      openings++;
      sock.write(sessionOpening(pingId));
      timer = setTimeout(() => send(Math.min(wait * 2, retryMs * 8)), wait);
    };
    const stopListening = (): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onClose);
      sock.off('close', onClose);
      sock.off('error', onError);
      signal.removeEventListener('abort', onClose);
    };
    const finish = (ok: boolean): void => {
      stopListening();
      resolve(ok);
    };
    const onData = (chunk: Buffer): void => {
      const rest = scanner.push(chunk);
      if (!rest) return;
      sock.pause();
      if (rest.length > 0) sock.unshift(rest);
      onOpened?.({ staleBytes: scanner.discarded, openings });
      finish(true);
    };
    const onClose = (): void => finish(false);
    const onError = (err: Error): void => {
      stopListening();
      reject(err);
    };
    sock.on('data', onData);
    sock.once('end', onClose);
    sock.once('close', onClose);
    sock.once('error', onError);
    signal.addEventListener('abort', onClose, { once: true });
    send(retryMs);
  });
}

/** Resolves false when aborted. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

export function connectUnix(
  path: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    if (signal?.aborted) return reject(new Error(`connect ${path}: aborted`));
    const sock = connect({ path, allowHalfOpen: true });
    const fail = (err: Error) => {
      cleanup();
      sock.destroy();
      reject(err);
    };
    const onAbort = () => fail(new Error(`connect ${path}: aborted`));
    const timer = setTimeout(
      () => fail(new Error(`connect ${path}: timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      sock.off('error', fail);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.once('error', fail);
    sock.once('connect', () => {
      cleanup();
      resolve(sock);
    });
  });
}

async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new Error(`serial bridge: ${path} exists and is not a socket`);
  await rm(path);
}

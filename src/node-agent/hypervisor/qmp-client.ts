// QMP (QEMU Machine Protocol) over the VM's unix socket: one JSON object per line, a greeting,
// the capabilities handshake, then commands (matched to replies by id) and asynchronous events.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { StringDecoder } from 'node:string_decoder';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpStatus {
  status: string;
  running: boolean;
  singlestep?: boolean;
}

export interface QmpCallOpts {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** QEMU answered a command with an error object. */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
  }
}

/** Splits a byte stream into lines; a chunk may end mid-line or mid-character. */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private buf = '';

  push(chunk: Buffer | string): string[] {
    this.buf += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const lines: string[] = [];
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      if (line.trim() !== '') lines.push(line);
    }
    return lines;
  }

  /** Bytes received after the last newline. */
  get pending(): string {
    return this.buf;
  }
}

/** Parses QMP lines into messages; a line that is not a JSON object is an error (a broken peer). */
export function parseQmpLine(line: string): Record<string, unknown> {
  const msg: unknown = JSON.parse(line);
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
    throw new Error(`QMP sent a non-object: ${line.slice(0, 200)}`);
  }
  return msg as Record<string, unknown>;
}

const DEFAULT_TIMEOUT_MS = 10_000;

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  cleanup: () => void;
}

function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  // AbortSignal.timeout's reason is a DOMException, which is not always an Error here.
  const msg = (r as { message?: unknown } | undefined)?.message;
  return new Error(typeof msg === 'string' ? msg : 'aborted');
}

/**
 * One QMP session. Emits 'event' (QmpEvent) for every asynchronous event and 'close' when the
 * socket ends (QEMU exited or closed it); pending commands then fail.
 */
export class QmpClient extends EventEmitter {
  private readonly lines = new LineSplitter();
  private readonly pending = new Map<string, Pending>();
  private nextId = 1;
  private closedError: Error | undefined;
  private greetingWaiter: ((msg: Record<string, unknown>) => void) | undefined;
  /** The QEMU version from the greeting. */
  version: { major: number; minor: number; micro: number } | undefined;

  private constructor(private readonly socket: net.Socket) {
    super();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => this.onClose(e));
    socket.on('close', () => this.onClose(new Error('QMP connection closed')));
  }

  /**
   * Connects (retrying while QEMU has not created the socket yet), reads the greeting and runs
   * the capabilities handshake, all within timeoutMs.
   */
  static async connect(socketPath: string, opts: QmpCallOpts = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const signal = AbortSignal.any([
      AbortSignal.timeout(timeoutMs),
      ...(opts.signal ? [opts.signal] : []),
    ]);
    let lastErr: unknown;
    while (!signal.aborted) {
      let socket: net.Socket;
      try {
        socket = await connectOnce(socketPath, signal);
      } catch (e) {
        lastErr = e;
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ECONNREFUSED') break;
        await new Promise((r) => setTimeout(r, 25));
        continue;
      }
      const client = new QmpClient(socket);
      try {
        await client.handshake(signal);
        return client;
      } catch (e) {
        client.close();
        throw e;
      }
    }
    const why = signal.aborted && !lastErr ? abortError(signal) : lastErr;
    throw new Error(
      `QMP connect to ${socketPath} failed within ${timeoutMs} ms: ${(why as Error)?.message ?? why}`,
    );
  }

  private async handshake(signal: AbortSignal): Promise<void> {
    const greeting = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const onAbort = (): void => reject(abortError(signal));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.once('close', () => reject(this.closedError ?? new Error('QMP closed before greeting')));
      this.greetingWaiter = (msg) => {
        signal.removeEventListener('abort', onAbort);
        resolve(msg);
      };
    });
    const qmp = greeting.QMP as { version?: { qemu?: QmpClient['version'] } } | undefined;
    if (!qmp) throw new Error(`QMP greeting expected, got ${JSON.stringify(greeting)}`);
    this.version = qmp.version?.qemu;
    await this.execute('qmp_capabilities', undefined, { signal });
  }

  private onData(chunk: Buffer): void {
    for (const line of this.lines.push(chunk)) {
      let msg: Record<string, unknown>;
      try {
        msg = parseQmpLine(line);
      } catch (e) {
        this.socket.destroy(e as Error);
        return;
      }
      this.dispatch(msg);
    }
  }

  private dispatch(msg: Record<string, unknown>): void {
    if (this.greetingWaiter) {
      const w = this.greetingWaiter;
      this.greetingWaiter = undefined;
      w(msg);
      return;
    }
    if (typeof msg.event === 'string') {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p || id === undefined) return; // a reply to a command we gave up on
    this.pending.delete(id);
    p.cleanup();
    if ('error' in msg) {
      const err = (msg.error ?? {}) as { class?: string; desc?: string };
      p.reject(new QmpError(p.command, err.class ?? 'GenericError', err.desc ?? ''));
    } else {
      p.resolve(msg.return);
    }
  }

  private onClose(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.cleanup();
      p.reject(new Error(`QMP ${p.command}: ${err.message}`));
    }
    this.socket.destroy();
    this.emit('close', err);
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** Runs one command; rejects with QmpError on an error reply, or on timeout/abort/close. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: QmpCallOpts = {},
  ): Promise<T> {
    if (this.closedError) {
      return Promise.reject(new Error(`QMP ${command}: ${this.closedError.message}`));
    }
    const id = `k${this.nextId++}`;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        cleanup();
        reject(new Error(`QMP ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      const onAbort = (): void => {
        this.pending.delete(id);
        cleanup();
        reject(abortError(opts.signal as AbortSignal));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        command,
        resolve: resolve as (v: unknown) => void,
        reject,
        cleanup,
      });
      const msg =
        args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  queryStatus(opts?: QmpCallOpts): Promise<QmpStatus> {
    return this.execute<QmpStatus>('query-status', undefined, opts);
  }

  /** Presses the ACPI power button; the guest decides whether and when to power off. */
  async systemPowerdown(opts?: QmpCallOpts): Promise<void> {
    await this.execute('system_powerdown', undefined, opts);
  }

  /** Asks QEMU to exit. QEMU may close the socket before its reply arrives: that counts as done. */
  async quit(opts?: QmpCallOpts): Promise<void> {
    try {
      await this.execute('quit', undefined, opts);
    } catch (e) {
      if (!this.closed || e instanceof QmpError) throw e;
    }
  }

  /** Resolves with the next event of that name (SHUTDOWN, POWERDOWN…), or rejects on timeout/close. */
  waitForEvent(name: string, opts: QmpCallOpts = {}): Promise<QmpEvent> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (this.closedError) {
      return Promise.reject(
        new Error(`waiting for QMP event ${name}: ${this.closedError.message}`),
      );
    }
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const onEvent = (ev: QmpEvent): void => {
        if (ev.event !== name) return;
        done();
        resolve(ev);
      };
      const onClose = (err: Error): void => {
        done();
        reject(new Error(`waiting for QMP event ${name}: ${err.message}`));
      };
      const onAbort = (): void => {
        done();
        reject(abortError(opts.signal as AbortSignal));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no QMP event ${name} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('event', onEvent);
      this.on('close', onClose);
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    this.onClose(new Error('QMP client closed'));
  }
}

function connectOnce(socketPath: string, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ path: socketPath });
    const onAbort = (): void => {
      s.destroy();
      reject(abortError(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    s.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (e) => {
      signal.removeEventListener('abort', onAbort);
      s.destroy();
      reject(e);
    });
  });
}

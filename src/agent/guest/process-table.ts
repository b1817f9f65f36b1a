// The processes the agent spawned (crun run / crun exec children): their stdio buffers, stdin and
// exit status, looked up by (container id, exec id). A process with a terminal runs under a
// terminal relay (guest/tty-relay), which holds the terminal crun makes: its stdin and stdout are
// the terminal's, its stderr ends at once (a terminal has one output, as in Kata).
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import type { Duplex, Readable } from 'node:stream';
import { deadlineExceeded, failedPrecondition, notFound, StatusError } from './status-error.js';
import { sizeLine, TtyControl } from './tty-control.js';
import { status } from '@grpc/grpc-js';

/** Default read size when a ReadStdout/ReadStderr asks for 0 bytes. */
export const DEFAULT_READ_LEN = 32 * 1024;
// Above this many unread bytes the child's pipe is paused, so a host that never reads cannot
// exhaust the guest's memory; the child then blocks on write like it would on a full pipe.
const HIGH_WATER_MARK = 1 << 20;
// After the process exits, what it wrote is already in the pipe; grandchildren that inherited the
// pipe must not keep a reader waiting for ever.
const AFTER_EXIT_GRACE_MS = 500;

/** The exit status the protocol reports: the exit code, or 128+N for a process killed by signal N. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const n = signal ? osConstants.signals[signal] : undefined;
  return n === undefined ? 255 : 128 + n;
}

/**
 * One output stream of a process, buffered for blocking reads of up to `len` bytes. A read waits
 * for data; once the stream ended and the buffer drained it returns an empty buffer, at once and
 * every time after.
 */
export class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private readonly waiters = new Set<() => void>();
  private source?: Readable;
  private paused = false;

  /** Feeds this buffer from a stream, pausing it while the buffer is full. */
  attach(stream: Readable): void {
    this.source = stream;
    stream.on('data', (b: Buffer) => this.push(b));
    stream.on('end', () => this.end());
    stream.on('close', () => this.end());
    stream.on('error', () => this.end());
  }

  push(data: Buffer): void {
    if (this.ended || data.length === 0) return;
    this.chunks.push(data);
    this.size += data.length;
    if (this.size >= HIGH_WATER_MARK && this.source && !this.paused) {
      this.paused = true;
      this.source.pause();
    }
    this.wake();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    // Nothing more will be read from it: let a writer that is still alive see the pipe close.
    if (this.source && !this.source.destroyed) this.source.destroy();
    this.wake();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get buffered(): number {
    return this.size;
  }

  async read(len: number, signal?: AbortSignal): Promise<Buffer> {
    const want = len > 0 ? len : DEFAULT_READ_LEN;
    for (;;) {
      if (this.size > 0) return this.take(want);
      if (this.ended) return Buffer.alloc(0);
      await this.waitForChange(signal);
    }
  }

  private take(want: number): Buffer {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < want && this.chunks.length > 0) {
      const head = this.chunks[0]!;
      const n = Math.min(head.length, want - got);
      parts.push(head.subarray(0, n));
      got += n;
      if (n === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(n);
    }
    this.size -= got;
    if (this.paused && this.size < HIGH_WATER_MARK && this.source) {
      this.paused = false;
      this.source.resume();
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, got);
  }

  private waitForChange(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new StatusError(status.CANCELLED, 'read cancelled'));
        return;
      }
      const done = (): void => {
        this.waiters.delete(done);
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        this.waiters.delete(done);
        reject(new StatusError(status.CANCELLED, 'read cancelled'));
      };
      this.waiters.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** How long the terminal relay may take to answer a size (it is one ioctl). */
export const RESIZE_TIMEOUT_MS = 5_000;

export interface TerminalOptions {
  /** The relay binary (kata-tty-relay). */
  relayBin: string;
  /** The unix socket the relay listens on and crun sends the terminal to (--console-socket). */
  consoleSocket: string;
  /** How long the command may take to hand the terminal over. */
  readyTimeoutMs: number;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Run `file args` under the terminal relay (the process has a terminal). */
  terminal?: TerminalOptions;
}

/**
 * A process the agent runs as its own child, so that Node.js can reap it and owns its stdio. It is
 * created before it starts (a container's init exists from CreateContainer on); reads and waits
 * made before the start block until it runs and ends.
 */
export class GuestProcess {
  readonly stdout = new OutputBuffer();
  readonly stderr = new OutputBuffer();
  private child?: ChildProcess;
  private status?: number;
  private failure?: StatusError;
  private readonly exitWaiters = new Set<() => void>();
  private stdinClosed = false;
  private control?: TtyControl;
  /** The process's own pid when known (crun exec --pid-file), for signals crun cannot forward. */
  realPid?: number;

  constructor(
    readonly containerId: string,
    readonly execId: string,
    /** Whether the process runs with a terminal (OCI process.terminal). */
    readonly terminal = false,
  ) {
    // A terminal merges the process's stderr into its one output.
    if (terminal) this.stderr.end();
  }

  get started(): boolean {
    return this.child !== undefined;
  }

  get exited(): boolean {
    return this.status !== undefined || this.failure !== undefined;
  }

  get exitStatus(): number | undefined {
    return this.status;
  }

  /** The pid of the child the agent spawned (crun), if it is still running. */
  get pid(): number | undefined {
    return this.exited ? undefined : this.child?.pid;
  }

  /**
   * Spawns the child; resolves once it runs (with a terminal: once the relay holds it, or the
   * command ended without making one), rejects if it could not be started.
   */
  async start(file: string, args: readonly string[], opts: StartOptions = {}): Promise<void> {
    if (this.child) throw failedPrecondition(`${this.label} already started`);
    const term = opts.terminal;
    if (this.terminal !== (term !== undefined)) {
      throw new Error(
        `${this.label}: terminal ${this.terminal} but started with${term ? '' : 'out'} a relay`,
      );
    }
    const [bin, argv] = term
      ? [term.relayBin, ['--console-socket', term.consoleSocket, '--', file, ...args]]
      : [file, [...args]];
    const child = spawn(bin, argv, {
      // The relay's own stderr is the agent's (its crashes reach the console); fd 3 its control.
      stdio: term ? ['pipe', 'pipe', 'inherit', 'pipe'] : ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    this.child = child;
    this.stdout.attach(child.stdout!);
    if (!term) this.stderr.attach(child.stderr!);
    else this.control = new TtyControl(child.stdio[3] as Duplex, this.label);
    // EPIPE on a process that stopped reading is reported by WriteStdin, not thrown here.
    child.stdin!.on('error', () => {});
    if (this.stdinClosed) child.stdin!.end();
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err) => {
        if (this.exited) return;
        const msg = `${this.label}: cannot start ${bin}: ${err.message}`;
        (term ? this.stdout : this.stderr).push(Buffer.from(`${msg}\n`));
        this.finish(127);
        reject(new StatusError(status.INTERNAL, msg));
      });
      child.once('exit', (code, signal) => this.finish(exitStatus(code, signal)));
    });
    await spawned;
    if (term) await this.terminalReady(term.readyTimeoutMs);
  }

  /** Waits until the relay holds the terminal; a command that failed first is no error here. */
  private async terminalReady(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>(
      (r) => (timer = setTimeout(() => r('timeout'), timeoutMs)),
    );
    const outcome = await Promise.race([this.control!.ready, timedOut]);
    clearTimeout(timer);
    if (outcome !== 'timeout') return;
    this.kill('SIGKILL');
    throw deadlineExceeded(`${this.label}: no terminal within ${timeoutMs} ms`);
  }

  /** Sets the size of the process's terminal (TtyWinResize); resolves once it is applied. */
  async resize(row: number, column: number, timeoutMs = RESIZE_TIMEOUT_MS): Promise<void> {
    sizeLine(row, column);
    if (!this.terminal) throw failedPrecondition(`${this.label} has no terminal`);
    if (!this.control) throw failedPrecondition(`${this.label} has not started`);
    if (this.exited) throw failedPrecondition(`${this.label} has exited`);
    await this.control.resize(row, column, timeoutMs);
  }

  /** Resolves with the exit status; works any number of times, before and after the exit. */
  async wait(signal?: AbortSignal): Promise<number> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.status !== undefined) return this.status;
      await new Promise<void>((resolve, reject) => {
        if (signal?.aborted) {
          reject(new StatusError(status.CANCELLED, 'wait cancelled'));
          return;
        }
        const done = (): void => {
          this.exitWaiters.delete(done);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = (): void => {
          this.exitWaiters.delete(done);
          reject(new StatusError(status.CANCELLED, 'wait cancelled'));
        };
        this.exitWaiters.add(done);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  writeStdin(data: Uint8Array): Promise<number> {
    const stdin = this.child?.stdin;
    if (!stdin) return Promise.reject(failedPrecondition(`${this.label} has not started`));
    if (this.stdinClosed || stdin.writableEnded || stdin.destroyed) {
      return Promise.reject(failedPrecondition(`${this.label}: stdin is closed`));
    }
    return new Promise((resolve, reject) => {
      stdin.write(Buffer.from(data), (err) => {
        if (err) reject(failedPrecondition(`${this.label}: stdin: ${err.message}`));
        else resolve(data.length);
      });
    });
  }

  closeStdin(): void {
    this.stdinClosed = true;
    const stdin = this.child?.stdin;
    if (stdin && !stdin.writableEnded) stdin.end();
  }

  /** Signals the spawned child itself (crun forwards catchable signals to the container process). */
  kill(sig: NodeJS.Signals | number): boolean {
    const pid = this.pid;
    if (pid === undefined) return false;
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  /** Ends a process that never started (its container was removed): waiters and readers return. */
  abandon(reason: string): void {
    if (this.exited) return;
    if (this.child) return;
    this.failure = failedPrecondition(`${this.label}: ${reason}`);
    this.stdout.end();
    this.stderr.end();
    for (const w of [...this.exitWaiters]) w();
  }

  private finish(code: number): void {
    if (this.exited) return;
    this.status = code;
    for (const w of [...this.exitWaiters]) w();
    setTimeout(() => {
      this.stdout.end();
      this.stderr.end();
    }, AFTER_EXIT_GRACE_MS).unref();
  }

  private get label(): string {
    return `process ${JSON.stringify(this.execId)} of container ${JSON.stringify(this.containerId)}`;
  }
}

/** Every process, by container id and exec id; unknown ids are NOT_FOUND, naming the id. */
export class ProcessTable {
  private readonly byContainer = new Map<string, Map<string, GuestProcess>>();

  add(p: GuestProcess): void {
    let m = this.byContainer.get(p.containerId);
    if (!m) {
      m = new Map();
      this.byContainer.set(p.containerId, m);
    }
    if (m.has(p.execId)) {
      throw new StatusError(
        status.ALREADY_EXISTS,
        `exec_id ${JSON.stringify(p.execId)} already exists in container ${JSON.stringify(p.containerId)}`,
      );
    }
    m.set(p.execId, p);
  }

  has(containerId: string, execId: string): boolean {
    return this.byContainer.get(containerId)?.has(execId) ?? false;
  }

  get(containerId: string, execId: string): GuestProcess {
    const p = this.byContainer.get(containerId)?.get(execId);
    if (!p) {
      throw notFound(
        `exec_id ${JSON.stringify(execId)} not found in container ${JSON.stringify(containerId)}`,
      );
    }
    return p;
  }

  ofContainer(containerId: string): GuestProcess[] {
    return [...(this.byContainer.get(containerId)?.values() ?? [])];
  }

  removeContainer(containerId: string): void {
    this.byContainer.delete(containerId);
  }
}

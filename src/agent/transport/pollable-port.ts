// The virtio-serial port driven by the event loop (epoll) instead of libuv's thread pool: under
// TCG every thread-pool hop costs a wake-up of another thread and a queue round trip, which the
// guest pays on each frame. Node has no public way to make a stream of a character device, so the
// fd is handed to a pipe handle (uv_pipe_open takes any pollable fd; the port polls as a tty does).
//
// The port's "no host" state reads as end of file again and again. A libuv stream stops at the
// first EOF, so each EOF closes this fd and the next read opens the device afresh; bytes a session
// had queued when its host left die with that fd instead of reaching the next host.
import {
  close as closeFd,
  constants as fsConstants,
  fstat,
  open as openFd,
  readSync,
} from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import net from 'node:net';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import type { PortIo } from './port-io.js';

interface PipeHandle {
  open(fd: number): number;
  close(): void;
}
interface PipeWrapBinding {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number };
}

/** The pipe_wrap binding, or undefined where this Node has none. */
function pipeWrap(): PipeWrapBinding | undefined {
  try {
    const binding = (process as unknown as { binding(name: string): unknown }).binding('pipe_wrap');
    const b = binding as Partial<PipeWrapBinding>;
    return typeof b.Pipe === 'function' && b.constants ? (b as PipeWrapBinding) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Opens `path` as an event-loop stream. Rejects when this Node cannot (no pipe_wrap) or `path` is
 * not a virtio-serial port, so the caller can fall back to blocking reads. (libuv aborts the
 * process on a device that cannot be polled, so only a known kind of device is handed to it.)
 */
export async function openPollablePort(path: string): Promise<PortIo> {
  const binding = pipeWrap();
  if (!binding) throw new Error('this Node.js has no pipe_wrap binding');
  const port = new PollablePort(path, binding, () => hostConnected(path));
  await port.connect(); // proves the device can be polled, before anyone relies on it
  return port;
}

const openAsync = promisify(openFd);
/** Bytes read ahead of the serving loop before reads stop (its own backpressure). */
const QUEUE_LIMIT = 256 * 1024;

/**
 * The virtio console driver's own view of the port, from debugfs (mounted by the guest's init):
 * "host_connected: 0|1". Undefined without debugfs; the port is then opened to find out.
 */
async function hostConnected(devicePath: string): Promise<boolean | undefined> {
  try {
    const text = await readFile(`/sys/kernel/debug/virtio-ports/${basename(devicePath)}`, 'utf8');
    const m = /^host_connected: ([01])$/m.exec(text);
    return m ? m[1] === '1' : undefined;
  } catch {
    return undefined;
  }
}
const fstatAsync = promisify(fstat);

/**
 * What the port holds right now, without waiting: reads until EAGAIN (a host is there, nothing
 * more yet) or 0 (no host). Synchronous on purpose: nothing may run between it and the close.
 */
function drainNow(fd: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (;;) {
    const buf = Buffer.allocUnsafe(64 * 1024);
    let n: number;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch {
      return chunks; // EAGAIN, or the port already gone
    }
    if (n === 0) return chunks;
    chunks.push(buf.subarray(0, n));
  }
}

/** The sysfs subsystem of the character device open at `fd` ("virtio-ports" for a port). */
async function deviceSubsystem(fd: number): Promise<string> {
  const st = await fstatAsync(fd, { bigint: true });
  if (!st.isCharacterDevice()) return 'not a character device';
  const rdev = st.rdev;
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  try {
    const link = await readlink(`/sys/dev/char/${major}:${minor}/subsystem`);
    return link.slice(link.lastIndexOf('/') + 1);
  } catch {
    return `character device ${major}:${minor} unknown to sysfs`;
  }
}

class PollablePort implements PortIo {
  private socket: net.Socket | undefined;
  private readonly queue: Buffer[] = [];
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private closed = false;
  private queued = 0;
  /** Bytes of the next host, read just before the fd of the last one was closed. */
  private carry: Buffer[] = [];

  constructor(
    private readonly path: string,
    private readonly binding: PipeWrapBinding,
    /** Whether a host is connected, read without opening the port; undefined when unknown. */
    private readonly hostState: () => Promise<boolean | undefined>,
  ) {}

  async connect(): Promise<void> {
    // A plain fd, not a FileHandle: the pipe handle owns it from here and closes it.
    const fd = await openAsync(
      this.path,
      fsConstants.O_RDWR | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY,
    );
    let handle: PipeHandle | undefined;
    try {
      const kind = await deviceSubsystem(fd);
      if (kind !== 'virtio-ports')
        throw new Error(`${this.path} is not a virtio-serial port (${kind})`);
      handle = new this.binding.Pipe(this.binding.constants.SOCKET);
      const rc = handle.open(fd);
      if (rc !== 0) throw new Error(`${this.path}: libuv cannot open it as a stream (error ${rc})`);
    } catch (err) {
      handle?.close();
      closeFd(fd, () => {});
      throw err;
    }
    // `handle` is an undocumented option of net.Socket (how Node wraps its own pipes).
    const socket = new net.Socket({
      handle,
      readable: true,
      writable: true,
    } as net.SocketConstructorOpts);
    socket.pause();
    // Events of a socket already dropped (its late 'close') must not touch the current one.
    const current = () => this.socket === socket;
    socket.on('data', (chunk: Buffer) => {
      if (!current()) return;
      this.queue.push(chunk);
      this.queued += chunk.length;
      // Stopping and restarting reads costs epoll_ctl calls, dear under TCG: only past a bound.
      if (this.queued >= QUEUE_LIMIT) socket.pause();
      this.notify();
    });
    socket.on('end', () => {
      if (!current()) return;
      this.ended = true;
      // Closing the port makes the guest kernel discard what it holds for us, and a new host may
      // already have written there: take it now, in the same tick as the close.
      this.carry = drainNow(fd);
      this.drop();
      this.notify();
    });
    socket.on('error', (err) => {
      if (!current()) return;
      this.failure = err;
      this.notify();
    });
    socket.on('close', () => {
      if (!current()) return;
      this.ended = true;
      this.notify();
    });
    this.socket = socket;
    this.ended = false;
  }

  async read(buf: Buffer): Promise<number> {
    for (;;) {
      if (this.closed) return 0;
      const head = this.queue[0];
      if (head) return this.take(head, buf);
      if (this.failure) {
        const err = this.failure;
        this.failure = undefined;
        this.drop();
        throw err;
      }
      if (this.ended) {
        // The end of the last host first; then whatever the next one had already sent.
        this.drop();
        this.ended = false;
        for (const chunk of this.carry.splice(0)) {
          this.queue.push(chunk);
          this.queued += chunk.length;
        }
        return 0;
      }
      if (!this.socket) {
        // Opening and closing the port while no host is there would race a host arriving: data
        // it sends lands in the guest's buffer just as the close discards it. So the port stays
        // closed (QEMU keeps the host's bytes) until the kernel says a host is connected.
        if ((await this.hostState()) === false) return 0;
        await this.connect();
        continue;
      }
      const woken = new Promise<void>((resolve) => (this.wake = resolve));
      if (this.socket.isPaused()) this.socket.resume();
      await woken;
    }
  }

  write(buf: Buffer): Promise<void> {
    const socket = this.socket;
    if (!socket || socket.destroyed || this.ended) {
      return Promise.reject(new Error(`${this.path}: no host session to write to`));
    }
    return new Promise((resolve, reject) =>
      socket.write(buf, (err) => (err ? reject(err) : resolve())),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    this.drop();
    this.notify();
  }

  private take(head: Buffer, buf: Buffer): number {
    const n = head.copy(buf, 0, 0, Math.min(head.length, buf.length));
    if (n === head.length) this.queue.shift();
    else this.queue[0] = head.subarray(n);
    this.queued -= n;
    return n;
  }

  /** Closes the fd of the session that ended; the next read opens a new one. */
  private drop(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

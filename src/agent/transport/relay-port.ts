// Guest side of the agent channel through kata-port-relay (guest/port-relay/): the relay owns the
// virtio-serial port (non-blocking, epoll) and opens one unix connection to us per host session,
// closing it when that host is gone; what the gone host would have got is dropped there, never
// held for the next host. Here each connection is read and written on the event loop (no thread
// pool) and fed to the same session logic as the port itself (servePortIo: the demux still finds
// a host that came back so fast that the relay saw no end between the two).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { servePortIo, type PortIo, type ServePortOptions } from './guest-port.js';
import type { YamuxStream } from './yamux-session.js';

export interface PortRelayConfig {
  /** The kata-port-relay executable. */
  relayPath: string;
  /** The port's /dev path, which the relay opens. */
  device: string;
  /** Where we listen for the relay's connections (created here, mode 0600). */
  socketPath: string;
}

/** Bytes queued from one connection before we stop reading it (the relay then stops reading the port). */
const HIGH_WATER = 256 * 1024;

interface RelayConnection {
  socket: Socket;
  chunks: Buffer[];
  queued: number;
  ended: boolean;
  /** Writes are being gathered until the loop's check phase (one write for them all). */
  corked?: boolean;
}

/**
 * The relay's connections as one PortIo: each connection's bytes in order, then 0 (the host of
 * that session is gone), then the next connection's. Writes go to the connection being read; once
 * it has read as ended they are dropped until the next one's first bytes are read.
 */
export class RelayConnections implements PortIo {
  private readonly queue: RelayConnection[] = [];
  /** The connection whose bytes the reader is on (its session's writes go there). */
  private current: RelayConnection | undefined;
  private wake: (() => void) | undefined;
  private closed = false;

  add(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const c: RelayConnection = { socket, chunks: [], queued: 0, ended: false };
    socket.on('data', (chunk: Buffer) => {
      c.chunks.push(chunk);
      c.queued += chunk.length;
      if (c.queued > HIGH_WATER) socket.pause();
      this.notify();
    });
    const end = (): void => {
      c.ended = true;
      this.notify();
    };
    socket.once('end', end);
    socket.once('close', end);
    // A broken connection is the end of its session; the close that follows reports it.
    socket.on('error', () => {});
    this.queue.push(c);
    this.notify();
  }

  async read(buf: Buffer): Promise<number> {
    for (;;) {
      if (this.closed) return 0;
      const c = this.queue[0];
      if (c && c.chunks.length > 0) {
        this.current = c;
        const head = c.chunks[0]!;
        const n = head.copy(buf, 0, 0, Math.min(head.length, buf.length));
        if (n === head.length) c.chunks.shift();
        else c.chunks[0] = head.subarray(n);
        c.queued -= n;
        if (c.queued <= HIGH_WATER && c.socket.isPaused()) c.socket.resume();
        return n;
      }
      if (c && c.ended) {
        this.queue.shift();
        this.current = undefined;
        c.socket.destroy();
        return 0;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  write(buf: Buffer): Promise<void> {
    const c = this.current;
    if (c && !c.ended && !c.socket.destroyed) {
      // The frames of one turn of the event loop (an answer's headers and data, a window update)
      // leave in one write: the relay, the port and QEMU then handle them once, not per frame.
      if (!c.corked) {
        c.corked = true;
        c.socket.cork();
        setImmediate(() => {
          c.corked = false;
          c.socket.uncork();
        });
      }
      c.socket.write(buf);
    }
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.queue.splice(0)) c.socket.destroy();
    this.current = undefined;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

async function listen(server: Server, socketPath: string): Promise<void> {
  await rm(socketPath, { force: true }); // a stale socket of an earlier agent
  server.listen(socketPath);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([err]) => Promise.reject(err as Error)),
  ]);
  await chmod(socketPath, 0o600);
}

/**
 * Serves yamux streams through the relay until `signal` aborts. Rejects if the relay cannot be
 * started or exits: without it the host cannot reach us (the caller ends the agent, and the init
 * powers the VM off).
 */
export async function servePortViaRelay(
  config: PortRelayConfig,
  onStream: (stream: YamuxStream) => void,
  signal: AbortSignal,
  options: ServePortOptions = {},
): Promise<void> {
  // Our own abort, so the session loop also ends when the relay exits (it would otherwise read
  // the closed connections' 0 forever).
  const stop = new AbortController();
  const abort = (): void => stop.abort();
  if (signal.aborted) abort();
  signal.addEventListener('abort', abort, { once: true });
  const conns = new RelayConnections();
  const server = createServer((socket) => conns.add(socket));
  await listen(server, config.socketPath);
  const relay = spawn(config.relayPath, ['--port', config.device, '--agent', config.socketPath], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const relayEnded = new Promise<never>((_, reject) => {
    relay.once('error', (err) =>
      reject(new Error(`kata-port-relay ${config.relayPath} did not start: ${err.message}`)),
    );
    relay.once('exit', (code, sig) =>
      reject(new Error(`kata-port-relay exited (${sig ? `signal ${sig}` : `status ${code}`})`)),
    );
  });
  try {
    // No sleep after a session's end: the next read waits for the next connection.
    await Promise.race([
      servePortIo(conns, onStream, stop.signal, { ...options, eofPollMs: 0 }),
      relayEnded,
    ]);
  } finally {
    stop.abort();
    signal.removeEventListener('abort', abort);
    relay.removeAllListeners('exit');
    if (relay.exitCode === null && relay.signalCode === null) relay.kill('SIGKILL');
    server.close();
    await conns.close();
    await rm(config.socketPath, { force: true });
  }
}

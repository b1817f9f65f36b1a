// One exec or attach over a WebSocket (the v5.channel.k8s.io protocol, stream-protocol.ts) and
// the guest agent's process calls. Backpressure both ways: output is read from the agent only
// once the previous message left for the client, and stdin stops being read from the socket
// while too much waits for WriteStdin. The client going away ends everything: reads are
// cancelled, stdin is closed and an exec's process is killed (SIGKILL), so nothing it started
// stays in the guest.
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { WebSocket } from 'ws';
import { AgentRpcError } from '../../agent/errors.js';
import type { AgentClient } from '../../agent/agent-client.js';
import type { BuiltProcess } from '../../agent/process-spec.js';
import type { Logger } from '../../observability/logger.js';
import {
  CHANNEL,
  STREAM_PROTOCOL_V5,
  errorStatus,
  exitStatus,
  frame,
  parseIncoming,
  type StreamOptions,
} from '../../subresources/stream-protocol.js';
import type { OutputStream, OutputTap } from '../runtime/output-tap.js';

/** The agent calls a session makes (AgentClient's). */
export type ProcessAgent = Pick<
  AgentClient,
  | 'execProcess'
  | 'writeStdin'
  | 'closeStdin'
  | 'readStdout'
  | 'readStderr'
  | 'waitProcess'
  | 'signalProcess'
  | 'ttyWinResize'
>;

const READ_CHUNK = 64 * 1024;
/** Stdin waiting for WriteStdin above which the socket is paused, and below which resumed. */
const STDIN_HIGH = 1 << 20;
const STDIN_LOW = 256 * 1024;
/** The most one WriteStdin carries (as Kata's shim copies stdin: 32 KiB at a time). */
const STDIN_WRITE_MAX = 32 * 1024;
/** An attached client that has not taken a chunk in this long is dropped (attach only). */
const ATTACH_SEND_TIMEOUT_MS = 10_000;
const SIGKILL = 9;

export interface SessionTarget {
  agent: ProcessAgent;
  containerId: string;
  options: StreamOptions;
  logger: Logger;
}

/** Sends one message; resolves once it is written to the socket (the backpressure point). */
function send(ws: WebSocket, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (ws.readyState !== ws.OPEN) {
      reject(new Error('the client went away'));
      return;
    }
    ws.send(data, { binary: true }, (err) => (err ? reject(err) : resolve()));
  });
}

/** The session's shared plumbing: the abort on close, stdin in order with flow control. */
class Session {
  readonly abort = new AbortController();
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private stdinEnded = false;
  private wake?: () => void;
  private paused = false;
  private finished = false;

  /** The resize asked for before the process existed, applied once it does. */
  private pendingResize?: { width: number; height: number };

  /**
   * Listens at once: what the client sends while the process is being started (ExecProcess can
   * take a while) is queued, not lost. `execId` is set by `started` (attach: known from the start).
   */
  constructor(
    readonly ws: WebSocket,
    private readonly t: SessionTarget,
    private execId = '',
  ) {
    ws.on('close', () => this.abort.abort(new Error('the client went away')));
    ws.on('error', () => this.abort.abort(new Error('the connection failed')));
    ws.on('message', (raw, isBinary) => this.incoming(raw as Buffer, isBinary));
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  incoming(raw: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (!isBinary) return;
    const msg = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw as Buffer);
    const m = parseIncoming(msg);
    const { agent, containerId, options, logger } = this.t;
    if (m.kind === 'stdin' && options.stdin && !this.stdinEnded) {
      if (m.data.length === 0) return;
      this.queue.push(m.data);
      this.queued += m.data.length;
      if (this.queued > STDIN_HIGH && !this.paused) {
        this.paused = true;
        this.ws.pause();
      }
      this.wake?.();
    } else if (m.kind === 'close' && m.channel === CHANNEL.stdin) {
      this.stdinEnded = true;
      this.wake?.();
    } else if (m.kind === 'resize' && options.tty) {
      if (!this.execId) {
        this.pendingResize = { width: m.width, height: m.height };
        return;
      }
      agent
        .ttyWinResize(containerId, this.execId, m.height, m.width, { signal: this.signal })
        .catch((err: unknown) => logger.debug({ err }, 'resize refused'));
    } else if (m.kind === 'invalid') {
      logger.debug({ why: m.message }, 'bad client message');
    }
  }

  /** The process exists: a resize asked for meanwhile is applied. */
  started(execId: string): void {
    this.execId = execId;
    const r = this.pendingResize;
    if (r) {
      this.pendingResize = undefined;
      this.incoming(
        frame(CHANNEL.resize, JSON.stringify({ Width: r.width, Height: r.height })),
        true,
      );
    }
  }

  /** Writes stdin to the process as it comes, until the client's EOF (v5) or the end. */
  async stdinLoop(closeAtEof: boolean): Promise<void> {
    const { agent, containerId } = this.t;
    const opts = { signal: this.signal };
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk) {
        this.queued -= chunk.length;
        let off = 0;
        while (off < chunk.length) {
          const part = chunk.subarray(off, off + STDIN_WRITE_MAX);
          const n = await agent.writeStdin(containerId, this.execId, part, opts);
          off += n > 0 ? n : part.length;
        }
        if (this.paused && this.queued < STDIN_LOW) {
          this.paused = false;
          this.ws.resume();
        }
        continue;
      }
      if (this.stdinEnded || this.finished || this.signal.aborted) break;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.signal.removeEventListener('abort', done);
          this.wake = undefined;
          resolve();
        };
        this.wake = done;
        this.signal.addEventListener('abort', done, { once: true });
      });
    }
    if (closeAtEof && this.stdinEnded && !this.signal.aborted) {
      await agent.closeStdin(containerId, this.execId, opts);
    }
  }

  get done(): boolean {
    return this.finished;
  }

  /** The process ended: stdin that still comes has nowhere to go. */
  finish(): void {
    this.finished = true;
    this.wake?.();
  }

  /** The final status on the error channel, then a normal close. */
  async end(status: object): Promise<void> {
    if (this.ws.readyState === this.ws.OPEN) {
      await send(this.ws, frame(CHANNEL.error, JSON.stringify(status))).catch(() => {});
      this.ws.close(1000);
    }
  }
}

/**
 * A blocking call (a read, a wait) re-issued when only its deadline passed: an interactive session
 * may be quiet for longer than the RPC's deadline (rpc-timeouts.ts: "the caller re-issues").
 */
async function patiently<T>(call: () => Promise<T>, signal: AbortSignal): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch (err) {
      const expired = err instanceof AgentRpcError && err.code === GrpcStatus.DEADLINE_EXCEEDED;
      if (!expired || signal.aborted) throw err;
    }
  }
}

/** Reads one of the process's outputs to its end, sending it on `channel` (or dropping it). */
async function pumpOutput(
  s: Session,
  read: (len: number, o: { signal: AbortSignal }) => Promise<Buffer>,
  channel: number | undefined,
): Promise<void> {
  for (;;) {
    const data = await patiently(() => read(READ_CHUNK, { signal: s.signal }), s.signal);
    if (data.length === 0) return;
    if (channel !== undefined) await send(s.ws, frame(channel, data));
  }
}

/** `exec`: starts `process` in the container and carries its stdio until it exits. */
export async function runExec(ws: WebSocket, t: SessionTarget, built: BuiltProcess): Promise<void> {
  const { agent, containerId: cid, options: o, logger } = t;
  const s = new Session(ws, t);
  let execId: string;
  try {
    execId = await agent.execProcess(cid, built.process, built.stringUser);
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    await sendStatusAndClose(ws, errorStatus(`exec in container ${cid}: ${message}`));
    return;
  }
  s.started(execId);
  logger.info({ container: cid, execId, tty: o.tty }, 'exec started');
  const v5 = ws.protocol === STREAM_PROTOCOL_V5;
  if (!o.stdin) await agent.closeStdin(cid, execId).catch(() => {});
  const stdin = o.stdin
    ? s.stdinLoop(v5).catch((err: unknown) => {
        // Input that cannot be delivered ends the exec (the process would wait for it forever).
        if (!s.signal.aborted && !s.done) {
          logger.warn({ err, execId }, 'stdin failed: ending the exec');
          s.end(errorStatus(`stdin: ${(err as Error).message ?? String(err)}`)).catch(() => {});
          s.abort.abort(err);
        }
      })
    : Promise.resolve();
  try {
    await Promise.all([
      pumpOutput(
        s,
        (n, op) => agent.readStdout(cid, execId, n, op),
        o.stdout ? CHANNEL.stdout : undefined,
      ),
      pumpOutput(
        s,
        (n, op) => agent.readStderr(cid, execId, n, op),
        o.stderr ? CHANNEL.stderr : undefined,
      ),
    ]);
    const code = await patiently(
      () => agent.waitProcess(cid, execId, { signal: s.signal }),
      s.signal,
    );
    s.finish();
    await stdin;
    logger.info({ container: cid, execId, exitCode: code }, 'exec ended');
    await s.end(exitStatus(code));
  } catch (err) {
    s.finish();
    if (!s.signal.aborted) {
      logger.warn({ err, execId }, 'exec stream failed');
      await s.end(errorStatus(`exec: ${(err as Error).message ?? String(err)}`));
    }
    // Nothing the client started may outlive it: stdin closed, the process killed.
    await agent.closeStdin(cid, execId).catch(() => {});
    await agent.signalProcess(cid, execId, SIGKILL).catch(() => {});
    await agent.waitProcess(cid, execId, { timeoutMs: 10_000 }).catch(() => {});
    logger.info({ container: cid, execId }, 'exec ended with its client: process killed');
  } finally {
    ws.terminate();
  }
}

/**
 * `attach`: the container's current run — its output as it is written (from the pump that
 * writes its log) and its stdin — until the run ends or the client goes. Detaching neither
 * closes the container's stdin nor stops it.
 */
export async function runAttach(
  ws: WebSocket,
  t: SessionTarget,
  tap: OutputTap,
  exitCode: () => Promise<number | undefined>,
): Promise<void> {
  const { containerId: cid, options: o, logger } = t;
  const s = new Session(ws, t, cid);
  const channels: Record<OutputStream, number | undefined> = {
    stdout: o.stdout ? CHANNEL.stdout : undefined,
    stderr: o.stderr ? CHANNEL.stderr : o.tty && o.stdout ? CHANNEL.stdout : undefined,
  };
  const ended = new Promise<void>((resolve) => {
    const unsubscribe = tap.subscribe({
      data: async (stream, chunk) => {
        const ch = channels[stream];
        if (ch === undefined || s.signal.aborted) return;
        let timer: NodeJS.Timeout | undefined;
        const slow = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error('attached client too slow')),
            ATTACH_SEND_TIMEOUT_MS,
          );
        });
        try {
          await Promise.race([send(ws, frame(ch, chunk)), slow]);
        } catch (err) {
          s.abort.abort(err);
          ws.terminate();
        } finally {
          clearTimeout(timer);
        }
      },
      end: () => resolve(),
    });
    s.signal.addEventListener(
      'abort',
      () => {
        unsubscribe();
        resolve();
      },
      { once: true },
    );
  });
  logger.info({ container: cid }, 'attached');
  const stdin = o.stdin
    ? s.stdinLoop(false).catch((err: unknown) => {
        if (!s.signal.aborted) logger.warn({ err }, 'attach stdin failed');
      })
    : Promise.resolve();
  await ended;
  s.finish();
  await stdin;
  if (!s.signal.aborted) await s.end(exitStatus((await exitCode()) ?? 0));
  ws.terminate();
  logger.info({ container: cid }, 'detached');
}

/** A refusal after the upgrade (the stream exists, so the answer is a Status on channel 3). */
export async function sendStatusAndClose(ws: WebSocket, status: object): Promise<void> {
  if (ws.readyState === ws.OPEN) {
    await send(ws, frame(CHANNEL.error, JSON.stringify(status))).catch(() => {});
    ws.close(1000);
  }
  setTimeout(() => ws.terminate(), 1_000).unref();
}

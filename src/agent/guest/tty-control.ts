// The control channel to a process's terminal relay (guest/tty-relay, fd 3 of the relay), one
// line per message: the agent sends "<rows> <cols>"; the relay says "ready" once it holds the
// terminal, then "ok" or "error <text>" for each size line, in order.
import type { Duplex } from 'node:stream';
import { StatusError, failedPrecondition, invalidArgument } from './status-error.js';
import { status } from '@grpc/grpc-js';

/** The largest row or column count a terminal takes (struct winsize holds 16-bit numbers). */
export const MAX_TTY_SIZE = 0xffff;
// Longer than any line the relay writes ("error " and a short message): a channel that says
// more is broken.
const MAX_LINE = 4096;

export type ControlLine = { kind: 'ready' } | { kind: 'ok' } | { kind: 'error'; message: string };

/** The size line for TtyWinResize's row and column, refused naming the field. Pure. */
export function sizeLine(row: number, column: number): string {
  for (const [field, v] of [
    ['row', row],
    ['column', column],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > MAX_TTY_SIZE) {
      throw invalidArgument(`${field} ${v} is not a terminal size from 0 to ${MAX_TTY_SIZE}`);
    }
  }
  return `${row} ${column}\n`;
}

/** One line from the relay (without its newline). Pure. */
export function parseControlLine(line: string): ControlLine {
  if (line === 'ready') return { kind: 'ready' };
  if (line === 'ok') return { kind: 'ok' };
  if (line.startsWith('error ')) return { kind: 'error', message: line.slice('error '.length) };
  throw new Error(`terminal relay: unexpected control line ${JSON.stringify(line.slice(0, 200))}`);
}

/** Splits a byte stream into lines; what follows the last newline waits for more. Pure. */
export class LineSplitter {
  private rest = '';

  push(chunk: string): string[] {
    const text = this.rest + chunk;
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    if (this.rest.length > MAX_LINE) throw new Error('terminal relay: control line too long');
    return lines;
  }
}

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * The agent's end of one relay's control channel. `ready` resolves true once the relay holds the
 * terminal, false if the channel ended first (the command failed before it made one). Sizes are
 * answered in the order they were sent.
 */
export class TtyControl {
  readonly ready: Promise<boolean>;
  private setReady!: (ok: boolean) => void;
  private readonly pending: Pending[] = [];
  private readonly lines = new LineSplitter();
  private closed = false;

  constructor(
    private readonly stream: Duplex,
    private readonly label: string,
  ) {
    this.ready = new Promise((resolve) => (this.setReady = resolve));
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => this.onData(chunk));
    stream.on('end', () => this.close('the terminal relay ended'));
    stream.on('close', () => this.close('the terminal relay ended'));
    stream.on('error', (err) => this.close(`the terminal relay's channel failed: ${err.message}`));
  }

  /** Sets the terminal's size; resolves once the relay applied it. */
  resize(row: number, column: number, timeoutMs: number): Promise<void> {
    const line = sizeLine(row, column);
    if (this.closed) return Promise.reject(failedPrecondition(`${this.label}: terminal is gone`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // Answers come in order: a late one would be taken for the next request's.
        this.close(`the terminal relay did not answer within ${timeoutMs} ms`);
      }, timeoutMs);
      this.pending.push({ resolve, reject, timer });
      this.stream.write(line);
    });
  }

  private onData(chunk: string): void {
    let lines: string[];
    try {
      lines = this.lines.push(chunk);
    } catch (err) {
      this.close((err as Error).message);
      return;
    }
    for (const text of lines) {
      let msg: ControlLine;
      try {
        msg = parseControlLine(text);
      } catch (err) {
        this.close((err as Error).message);
        return;
      }
      if (msg.kind === 'ready') {
        this.setReady(true);
        continue;
      }
      const p = this.pending.shift();
      if (!p) {
        this.close('the terminal relay answered a size nobody set');
        return;
      }
      clearTimeout(p.timer);
      if (msg.kind === 'ok') p.resolve();
      else p.reject(new StatusError(status.INTERNAL, `${this.label}: resize: ${msg.message}`));
    }
  }

  private close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.setReady(false);
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(failedPrecondition(`${this.label}: ${reason}`));
    }
    if (!this.stream.destroyed) this.stream.destroy();
  }
}

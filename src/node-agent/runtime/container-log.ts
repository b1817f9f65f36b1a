// A container's output file, <logDir>/<ns>_<name>_<uid>/<container>.log, in kubelet's format
// (log-format.ts: a time, the stream and the output per line): appended in order,
// rotated at a size cap (<file>.1 the newest rotated, up to maxFiles kept), with the last lines
// kept in memory for status messages. A restart keeps the ended run's file as
// <container>.previous.log (what `log?previous=true` serves, as kubelet keeps the last one).
import { appendFile, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { LogRenderer, encodeChunk, type LogStream } from './log-format.js';

export function sandboxLogDir(
  logDir: string,
  meta: { namespace: string; name: string; uid: string },
): string {
  return path.join(logDir, `${meta.namespace}_${meta.name}_${meta.uid}`);
}

/** Where the previous run's output of a container is kept. Pure. */
export function previousLogFile(file: string): string {
  return file.replace(/\.log$/, '') + '.previous.log';
}

/** The renames that rotate `file`, oldest first so none overwrites a file still needed. Pure. */
export function rotationRenames(
  file: string,
  maxFiles: number,
): Array<{ from: string; to: string }> {
  const out: Array<{ from: string; to: string }> = [];
  for (let i = maxFiles - 1; i >= 1; i--)
    out.push({ from: `${file}.${i}`, to: `${file}.${i + 1}` });
  if (maxFiles >= 1) out.push({ from: file, to: `${file}.1` });
  return out;
}

/** Appends `chunk` to `pending` text and returns the completed lines plus the rest. Pure. */
export function splitLines(pending: string, chunk: string): { lines: string[]; rest: string } {
  const parts = (pending + chunk).split('\n');
  const rest = parts.pop() ?? '';
  return { lines: parts, rest };
}

export interface ContainerLogOptions {
  file: string;
  maxBytes: number;
  /** Rotated files kept besides the current one. */
  maxFiles: number;
  /** Lines remembered for tail(). */
  keepLines?: number;
}

export class ContainerLog {
  private size = -1;
  private chain: Promise<void> = Promise.resolve();
  private recent: string[] = [];
  private partial = '';

  constructor(private readonly opts: ContainerLogOptions) {}

  get file(): string {
    return this.opts.file;
  }

  /** Queues a write of `stream`'s output, stamped with the time now; writes happen in call order. */
  write(chunk: Buffer, stream: LogStream = 'stdout', now: Date = new Date()): Promise<void> {
    this.remember(chunk.toString('utf8'));
    const records = encodeChunk(chunk, stream, now.toISOString());
    const next = this.chain.then(() => this.append(records));
    this.chain = next.catch(() => {});
    return next;
  }

  /** Resolves once every queued write is on disk. */
  flush(): Promise<void> {
    return this.chain;
  }

  /** The last lines written (by this process; else read back from the file). */
  async tail(lines = 20): Promise<string[]> {
    await this.flush();
    const mem = [...this.recent, ...(this.partial ? [this.partial] : [])];
    if (mem.length > 0) return mem.slice(-lines);
    try {
      const r = new LogRenderer({ timestamps: false });
      const raw = await readFile(this.opts.file);
      const text = Buffer.concat([r.push(raw), r.flush()]).toString('utf8');
      return text
        .split('\n')
        .filter((l) => l !== '')
        .slice(-lines);
    } catch {
      return [];
    }
  }

  /**
   * A new run of the container starts: its file becomes the previous run's (replacing the one
   * before), the ended run's rotated files go, and the new run writes a fresh file.
   */
  newRun(): Promise<void> {
    const next = this.chain.then(async () => {
      await rename(this.opts.file, previousLogFile(this.opts.file)).catch(
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        },
      );
      for (let i = 1; i <= this.opts.maxFiles; i++) {
        await rm(`${this.opts.file}.${i}`, { force: true });
      }
      this.size = 0;
      this.recent = [];
      this.partial = '';
    });
    this.chain = next.catch(() => {});
    return next;
  }

  private remember(text: string): void {
    const { lines, rest } = splitLines(this.partial, text);
    this.partial = rest.slice(-4096);
    this.recent.push(...lines.map((l) => l.slice(0, 4096)));
    const keep = this.opts.keepLines ?? 50;
    if (this.recent.length > keep) this.recent.splice(0, this.recent.length - keep);
  }

  private async append(chunk: Buffer): Promise<void> {
    if (this.size < 0) {
      await mkdir(path.dirname(this.opts.file), { recursive: true, mode: 0o755 });
      this.size = await stat(this.opts.file).then(
        (s) => s.size,
        () => 0,
      );
    }
    if (this.size > 0 && this.size + chunk.length > this.opts.maxBytes) await this.rotate();
    await appendFile(this.opts.file, chunk, { mode: 0o640 });
    this.size += chunk.length;
  }

  private async rotate(): Promise<void> {
    if (this.opts.maxFiles < 1) {
      await rm(this.opts.file, { force: true });
    } else {
      await rm(`${this.opts.file}.${this.opts.maxFiles}`, { force: true });
      for (const r of rotationRenames(this.opts.file, this.opts.maxFiles)) {
        await rename(r.from, r.to).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
      }
    }
    this.size = 0;
  }
}

// A container's output as `log` serves it (kubelet's rules): the current file, or the previous
// run's with `previous`; the last `tailLines` lines; at most `limitBytes`; with `follow`, what is
// appended afterwards (across a rotation) until the container's run ends. Yields chunks so the
// caller writes each with backpressure; stops when `signal` aborts.
import { open, stat, type FileHandle } from 'node:fs/promises';
import { FileChange } from './file-change.js';

export interface LogReadOptions {
  file: string;
  tailLines?: number;
  limitBytes?: number;
  follow: boolean;
  /** True once the run that writes `file` has ended and its output is flushed. */
  ended: () => boolean;
  signal: AbortSignal;
  /** How often a followed file is looked at for more output when no write woke us (200 ms). */
  pollMs?: number;
}

const CHUNK = 64 * 1024;

/** Offset at which the last `n` lines of `text` start (a final line without '\n' counts). Pure. */
export function tailOffset(text: Buffer, n: number): number {
  if (n === 0) return text.length;
  let end = text.length;
  if (end > 0 && text[end - 1] === 0x0a) end--; // the newline that ends the last line
  let seen = 0;
  for (let i = end - 1; i >= 0; i--) {
    if (text[i] === 0x0a && ++seen === n) return i + 1;
  }
  return 0;
}

async function sizeAndIno(file: string): Promise<{ size: number; ino: number } | undefined> {
  try {
    const s = await stat(file);
    return { size: s.size, ino: s.ino };
  } catch {
    return undefined;
  }
}

async function readRange(fh: FileHandle, from: number, to: number): Promise<Buffer> {
  const buf = Buffer.alloc(to - from);
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, from + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}

/** The start of the output to send: everything, or where the last tailLines lines begin. */
async function startOffset(fh: FileHandle, size: number, tailLines?: number): Promise<number> {
  if (tailLines === undefined) return 0;
  // Lines are searched for backwards in growing windows, never reading more than needed.
  for (let window = CHUNK; ; window *= 4) {
    const from = Math.max(0, size - window);
    const text = await readRange(fh, from, size);
    const at = tailOffset(text, tailLines);
    if (at > 0 || from === 0) return from + at;
  }
}

export async function* readLog(o: LogReadOptions): AsyncGenerator<Buffer> {
  let budget = o.limitBytes ?? Number.POSITIVE_INFINITY;
  let fh: FileHandle | undefined;
  let ino = -1;
  let offset = 0;
  const change = o.follow ? new FileChange(o.file) : undefined;
  try {
    // Armed before the first read: a write between that read and the first wait still wakes it.
    change?.arm();
    const first = await sizeAndIno(o.file);
    if (first) {
      fh = await open(o.file, 'r');
      ino = first.ino;
      offset = await startOffset(fh, first.size, o.tailLines);
    }
    for (;;) {
      o.signal.throwIfAborted();
      // Read `ended` before reading to EOF: output written before the end is then all read.
      const endedBefore = o.ended();
      const now = await sizeAndIno(o.file);
      if (now && (now.ino !== ino || now.size < offset)) {
        // Rotated (a new file under the name) or truncated: read the new one from its start.
        change?.arm();
        await fh?.close();
        fh = await open(o.file, 'r');
        ino = now.ino;
        offset = 0;
      }
      while (fh && now && offset < now.size && budget > 0) {
        const to = Math.min(now.size, offset + CHUNK, offset + budget);
        const chunk = await readRange(fh, offset, to);
        if (chunk.length === 0) break;
        offset += chunk.length;
        budget -= chunk.length;
        yield chunk;
      }
      if (!o.follow || budget <= 0 || endedBefore) return;
      await change?.wait(o.pollMs ?? 200, o.signal);
    }
  } finally {
    change?.close();
    await fh?.close();
  }
}

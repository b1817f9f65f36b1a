// The format of a container's log file: kubelet's (CRI) — one record per line,
// "<RFC 3339 time> <stdout|stderr> <F|P> <content>", F ending a line of output and P a part of
// one (output written without its newline yet). The time is when the node agent read the output
// from the guest. `log` renders records back into the output, with `timestamps` and
// `sinceSeconds`/`sinceTime` read from the times. A line that is not a record (a file written
// before this format) is output as it is, with no time. Pure.
export type LogStream = 'stdout' | 'stderr';

/** `chunk` of `stream` as records stamped `time` (toISOString). Pure. */
export function encodeChunk(chunk: Buffer, stream: LogStream, time: string): Buffer {
  const out: Buffer[] = [];
  let start = 0;
  while (start < chunk.length) {
    const nl = chunk.indexOf(0x0a, start);
    const end = nl < 0 ? chunk.length : nl;
    out.push(Buffer.from(`${time} ${stream} ${nl < 0 ? 'P' : 'F'} `), chunk.subarray(start, end));
    out.push(Buffer.from('\n'));
    start = end + 1;
  }
  return Buffer.concat(out);
}

export interface LogRecord {
  /** The record's time as written, and in ms since the epoch; none for a line of old format. */
  time?: string;
  ms?: number;
  stream?: LogStream;
  /** Output continues in the next record (no newline of its own). */
  partial: boolean;
  content: Buffer;
}

const RECORD = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (stdout|stderr) ([PF]) /;

/** One line of the file (without its '\n'). Pure. */
export function parseRecord(line: Buffer): LogRecord {
  const head = line.subarray(0, 64).toString('latin1');
  const m = RECORD.exec(head);
  if (!m || !m[1]) return { partial: false, content: line };
  const ms = Date.parse(m[1]);
  return {
    time: m[1],
    ...(Number.isFinite(ms) && { ms }),
    stream: m[2] as LogStream,
    partial: m[3] === 'P',
    content: line.subarray(m[0].length),
  };
}

export interface RenderOptions {
  timestamps: boolean;
  /** Records older than this (ms since the epoch) are left out. */
  sinceMs?: number;
  limitBytes?: number;
}

/**
 * Turns the file's bytes, fed in order in any chunking, into the output `log` serves: each
 * record's content, a newline after F records, the time first on each line with `timestamps`,
 * nothing older than `sinceMs`, at most `limitBytes` in all.
 */
export class LogRenderer {
  private carry: Buffer = Buffer.alloc(0);
  private atLineStart = true;
  private budget: number;

  constructor(private readonly o: RenderOptions) {
    this.budget = o.limitBytes ?? Number.POSITIVE_INFINITY;
  }

  /** Nothing more may be written (limitBytes reached). */
  get full(): boolean {
    return this.budget <= 0;
  }

  push(chunk: Buffer): Buffer {
    const data = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    const out: Buffer[] = [];
    let start = 0;
    for (;;) {
      const nl = data.indexOf(0x0a, start);
      if (nl < 0) break;
      out.push(this.line(data.subarray(start, nl)));
      start = nl + 1;
    }
    this.carry = Buffer.from(data.subarray(start));
    return this.limit(Buffer.concat(out));
  }

  /** The end of the file: a last line without its '\n' still counts. */
  flush(): Buffer {
    if (this.carry.length === 0) return Buffer.alloc(0);
    const last = this.line(this.carry);
    this.carry = Buffer.alloc(0);
    return this.limit(last);
  }

  private line(raw: Buffer): Buffer {
    const r = parseRecord(raw);
    if (this.o.sinceMs !== undefined && r.ms !== undefined && r.ms < this.o.sinceMs) {
      return Buffer.alloc(0);
    }
    const parts: Buffer[] = [];
    if (this.o.timestamps && this.atLineStart && r.time) parts.push(Buffer.from(`${r.time} `));
    parts.push(r.content);
    if (!r.partial) parts.push(Buffer.from('\n'));
    this.atLineStart = !r.partial;
    return Buffer.concat(parts);
  }

  private limit(b: Buffer): Buffer {
    if (b.length <= this.budget) {
      this.budget -= b.length;
      return b;
    }
    const cut = b.subarray(0, Math.max(0, this.budget));
    this.budget = 0;
    return cut;
  }
}

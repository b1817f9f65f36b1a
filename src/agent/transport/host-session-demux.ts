// Guest side of the agent port: finds where one host's yamux session ends and the next begins,
// from the frames alone. A host that disconnects and reconnects within a few milliseconds may never
// show the guest an EOF, so the port's byte stream is "old host's frames, then new host's frames".
// A yamux client opens odd stream ids in increasing order and never reuses one, so a SYN for an id
// the live session has already seen (1 above all), or any SYN after the host's go-away, can only
// come from a new session: the old one ends there and nothing of it reaches the new one.
// Bytes that are not a plausible frame (the tail of a frame cut by a disconnect, then the next
// host's bytes) put the demux in resync mode: it discards up to the next SYN for stream 1, which
// is how every host session starts.
import { HEADER_LENGTH, Flag, FrameType, GoAwayCode, YAMUX_VERSION } from './yamux-frame.js';

/** No peer of ours sends a data frame larger than the window we grant, which is this. */
export const MAX_HOST_DATA_FRAME = 256 * 1024;

/** Odd ids skipped by a host (streams opened concurrently, SYNs sent out of order) we remember. */
const MAX_TRACKED_GAPS = 64;

export type DemuxEvent =
  /** Whole frames (header and payload) for the current session, in order. */
  | { kind: 'frames'; bytes: Buffer }
  /** The live session is over: a new one starts with the next 'frames'. */
  | { kind: 'new-session'; reason: string }
  /** Bytes that are no frame: the live session is over, and bytes are dropped until a SYN 1. */
  | { kind: 'garbage'; reason: string };

/** The stream ids one host session has opened. Pure; exported for tests. */
export class HostStreamIds {
  private highest = 0;
  private readonly gaps = new Set<number>();
  private goneAway = false;

  get opened(): boolean {
    return this.highest > 0;
  }

  /** The host said it opens no more streams in this session. */
  goAway(): void {
    this.goneAway = true;
  }

  /** Whether a SYN for `id` can belong to this session (ids are odd, never reused). */
  canOpen(id: number): boolean {
    if (this.goneAway) return false;
    return id > this.highest || this.gaps.has(id);
  }

  /** Records a SYN this session accepted. */
  open(id: number): void {
    if (this.gaps.delete(id)) return;
    for (let skipped = this.highest + 2; skipped < id; skipped += 2) {
      if (this.gaps.size >= MAX_TRACKED_GAPS) break;
      this.gaps.add(skipped);
    }
    this.highest = id;
  }
}

/** Why a header cannot be one a yamux client sent us, or undefined if it can. */
export function implausibleHeader(h: Buffer): string | undefined {
  const version = h.readUInt8(0);
  const type = h.readUInt8(1);
  const flags = h.readUInt16BE(2);
  const streamId = h.readUInt32BE(4);
  const length = h.readUInt32BE(8);
  if (version !== YAMUX_VERSION) return `version ${version}`;
  if (type > FrameType.GoAway) return `frame type ${type}`;
  if (flags & ~(Flag.SYN | Flag.ACK | Flag.FIN | Flag.RST)) return `flags 0x${flags.toString(16)}`;
  if (type === FrameType.Data || type === FrameType.WindowUpdate) {
    if (streamId === 0) return `frame type ${type} on stream 0`;
    if (flags & Flag.SYN && streamId % 2 === 0) return `SYN for even stream ${streamId}`;
    if (type === FrameType.Data && length > MAX_HOST_DATA_FRAME) {
      return `data frame of ${length} bytes (window is ${MAX_HOST_DATA_FRAME})`;
    }
    return undefined;
  }
  if (streamId !== 0) return `frame type ${type} on stream ${streamId}`;
  if (type === FrameType.Ping && flags !== Flag.SYN && flags !== Flag.ACK) {
    return `ping flags 0x${flags.toString(16)}`;
  }
  if (type === FrameType.GoAway && length > GoAwayCode.InternalError) return `go-away ${length}`;
  return undefined;
}

/** The first 8 bytes of every host session's first frame: SYN for stream 1 (data or window). */
function startsSession(buf: Buffer, at: number): boolean {
  return (
    buf[at] === YAMUX_VERSION &&
    (buf[at + 1] === FrameType.Data || buf[at + 1] === FrameType.WindowUpdate) &&
    buf.readUInt16BE(at + 2) === Flag.SYN &&
    buf.readUInt32BE(at + 4) === 1
  );
}

/**
 * Splits the bytes read from the port into host sessions. Feed it every chunk read; call
 * `hostGone()` when the port reads EOF (a clean boundary: a cut frame is dropped). Payloads pass
 * through as slices of the chunks read; only a header cut between two reads is copied.
 */
export class HostSessionDemux {
  /** The start of a header whose rest is in the next chunk. */
  private partialHeader: Buffer = EMPTY;
  /** Payload bytes of the current data frame still to pass through. */
  private payloadLeft = 0;
  private ids = new HostStreamIds();
  private resyncing = false;
  /** In resync mode: the last bytes seen, which may begin a SYN 1 the next chunk completes. */
  private carry: Buffer = EMPTY;

  get inResync(): boolean {
    return this.resyncing;
  }

  /** The host disconnected (EOF): whatever it left unfinished is dropped, the next host starts clean. */
  hostGone(): void {
    this.partialHeader = EMPTY;
    this.payloadLeft = 0;
    this.ids = new HostStreamIds();
    this.resyncing = false;
    this.carry = EMPTY;
  }

  /** The live session died on its own (a protocol error it reported): wait for a new host session. */
  sessionFailed(): void {
    this.startResync(this.partialHeader);
    this.payloadLeft = 0;
  }

  push(chunk: Buffer): DemuxEvent[] {
    const events: DemuxEvent[] = [];
    let runStart = 0; // start of the bytes of `chunk` passed through but not yet emitted
    const emitRun = (end: number): void => {
      if (end > runStart) events.push({ kind: 'frames', bytes: chunk.subarray(runStart, end) });
      runStart = end;
    };
    let at = 0;
    while (at < chunk.length) {
      if (this.payloadLeft > 0) {
        const n = Math.min(this.payloadLeft, chunk.length - at);
        this.payloadLeft -= n;
        at += n;
        continue;
      }
      if (this.resyncing) {
        at = this.resync(chunk, at);
        runStart = at;
        if (this.resyncing) break;
      }
      const fromPrevious = this.partialHeader;
      if (fromPrevious.length === 0 && chunk.length - at >= HEADER_LENGTH) {
        const header = chunk.subarray(at, at + HEADER_LENGTH);
        const verdict = this.judge(header);
        if (verdict.kind !== 'same') {
          emitRun(at);
          events.push(verdict);
        }
        if (verdict.kind === 'garbage') {
          this.startResync(EMPTY);
          at += 1;
          runStart = at;
          continue;
        }
        at += HEADER_LENGTH;
        if (header.readUInt8(1) === FrameType.Data) this.payloadLeft = header.readUInt32BE(8);
        continue;
      }
      // A header cut between reads: collect it, then judge it whole.
      emitRun(at);
      const take = Math.min(HEADER_LENGTH - fromPrevious.length, chunk.length - at);
      const header = Buffer.concat([fromPrevious, chunk.subarray(at, at + take)]);
      at += take;
      runStart = at;
      if (header.length < HEADER_LENGTH) {
        this.partialHeader = header;
        break;
      }
      this.partialHeader = EMPTY;
      const verdict = this.judge(header);
      if (verdict.kind !== 'same') events.push(verdict);
      if (verdict.kind === 'garbage') {
        // Rescan from the header's second byte, part of which came from the previous chunk.
        this.startResync(fromPrevious.subarray(1));
        at -= take;
        runStart = at;
        continue;
      }
      events.push({ kind: 'frames', bytes: header });
      if (header.readUInt8(1) === FrameType.Data) this.payloadLeft = header.readUInt32BE(8);
    }
    emitRun(at);
    return events;
  }

  /** Checks a whole header against the live session, recording the stream it opens. */
  private judge(header: Buffer): { kind: 'same' } | Exclude<DemuxEvent, { kind: 'frames' }> {
    const bad = implausibleHeader(header);
    if (bad) return { kind: 'garbage', reason: `not a yamux frame (${bad})` };
    const type = header.readUInt8(1);
    const flags = header.readUInt16BE(2);
    const streamId = header.readUInt32BE(4);
    if (type === FrameType.GoAway) this.ids.goAway();
    if ((type !== FrameType.Data && type !== FrameType.WindowUpdate) || !(flags & Flag.SYN)) {
      return { kind: 'same' };
    }
    if (this.ids.opened && !this.ids.canOpen(streamId)) {
      this.ids = new HostStreamIds();
      this.ids.open(streamId);
      return {
        kind: 'new-session',
        reason: `SYN for stream ${streamId}, which the live session cannot open`,
      };
    }
    this.ids.open(streamId);
    return { kind: 'same' };
  }

  private startResync(carry: Buffer): void {
    this.resyncing = true;
    this.ids = new HostStreamIds();
    this.partialHeader = EMPTY;
    this.carry = Buffer.from(carry);
  }

  /**
   * Looks for a SYN 1 in carry + chunk[at..]. Found: leaves resync mode with the header's bytes
   * that precede `chunk` in partialHeader and returns where in `chunk` parsing resumes. Not found:
   * keeps the last 7 bytes as the carry and returns chunk.length.
   */
  private resync(chunk: Buffer, at: number): number {
    const carry = this.carry;
    if (carry.length > 0) {
      const joined = Buffer.concat([carry, chunk.subarray(at, at + 7)]);
      for (let i = 0; i < carry.length; i++) {
        if (i + 8 <= joined.length && startsSession(joined, i)) {
          this.resyncing = false;
          this.carry = EMPTY;
          this.partialHeader = Buffer.from(carry.subarray(i));
          return at;
        }
      }
    }
    for (let i = at; i + 8 <= chunk.length; i++) {
      if (startsSession(chunk, i)) {
        this.resyncing = false;
        this.carry = EMPTY;
        return i;
      }
    }
    const tail = Buffer.concat([carry, chunk.subarray(at)]);
    this.carry = Buffer.from(tail.subarray(Math.max(0, tail.length - 7)));
    return chunk.length;
  }
}

const EMPTY = Buffer.alloc(0);

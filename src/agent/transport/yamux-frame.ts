// The yamux wire format (hashicorp/yamux spec.md): a 12-byte big-endian header, then, for data
// frames only, `length` bytes of payload. For the other types `length` is a value (window delta,
// ping opaque, go-away code), so the parser must not read a payload for them.

export const YAMUX_VERSION = 0;
export const HEADER_LENGTH = 12;

export const FrameType = { Data: 0, WindowUpdate: 1, Ping: 2, GoAway: 3 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const Flag = { SYN: 1, ACK: 2, FIN: 4, RST: 8 } as const;

export const GoAwayCode = { Normal: 0, ProtocolError: 1, InternalError: 2 } as const;

export interface FrameHeader {
  readonly version: number;
  readonly type: FrameType;
  readonly flags: number;
  readonly streamId: number;
  readonly length: number;
}

export interface Frame {
  readonly header: FrameHeader;
  /** Payload of a data frame; empty for every other type. */
  readonly payload: Buffer;
}

export class YamuxProtocolError extends Error {
  constructor(message: string) {
    super(`yamux protocol error: ${message}`);
    this.name = 'YamuxProtocolError';
  }
}

const U32_MAX = 0xffff_ffff;

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) {
    throw new RangeError(`yamux ${name} ${v} is not a 32-bit unsigned integer`);
  }
}

export function encodeHeader(h: Omit<FrameHeader, 'version'> & { version?: number }): Buffer {
  checkU32('stream id', h.streamId);
  checkU32('length', h.length);
  if (h.flags < 0 || h.flags > 0xffff) throw new RangeError(`yamux flags ${h.flags} out of range`);
  const buf = Buffer.allocUnsafe(HEADER_LENGTH);
  buf.writeUInt8(h.version ?? YAMUX_VERSION, 0);
  buf.writeUInt8(h.type, 1);
  buf.writeUInt16BE(h.flags, 2);
  buf.writeUInt32BE(h.streamId, 4);
  buf.writeUInt32BE(h.length, 8);
  return buf;
}

export function decodeHeader(buf: Buffer, offset = 0): FrameHeader {
  if (buf.length - offset < HEADER_LENGTH) {
    throw new RangeError(`yamux header needs ${HEADER_LENGTH} bytes, got ${buf.length - offset}`);
  }
  const version = buf.readUInt8(offset);
  if (version !== YAMUX_VERSION) throw new YamuxProtocolError(`unsupported version ${version}`);
  const type = buf.readUInt8(offset + 1);
  if (type > FrameType.GoAway) throw new YamuxProtocolError(`unknown frame type ${type}`);
  return {
    version,
    type: type as FrameType,
    flags: buf.readUInt16BE(offset + 2),
    streamId: buf.readUInt32BE(offset + 4),
    length: buf.readUInt32BE(offset + 8),
  };
}

/** Encodes a whole frame; `payload` is only valid for data frames. */
export function encodeFrame(h: Omit<FrameHeader, 'version'>, payload?: Buffer): Buffer {
  if (payload && payload.length > 0) {
    if (h.type !== FrameType.Data) throw new RangeError('only data frames carry a payload');
    if (payload.length !== h.length) throw new RangeError('data frame length != payload length');
    return Buffer.concat([encodeHeader(h), payload]);
  }
  return encodeHeader(h);
}

/**
 * Turns a byte stream cut at arbitrary points into whole frames. Chunks are kept as a list and
 * only copied when a header or payload straddles them, so large payloads cost one copy at most.
 */
export class FrameParser {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | undefined;

  /** @param maxPayload a data frame longer than this is a protocol error (guards memory). */
  constructor(private readonly maxPayload = 16 * 1024 * 1024) {}

  /** Bytes received but not yet part of a returned frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (!this.header) {
        if (this.buffered < HEADER_LENGTH) break;
        const header = decodeHeader(this.take(HEADER_LENGTH));
        if (header.type === FrameType.Data && header.length > this.maxPayload) {
          throw new YamuxProtocolError(
            `data frame of ${header.length} bytes exceeds limit ${this.maxPayload}`,
          );
        }
        this.header = header;
      }
      const need = this.header.type === FrameType.Data ? this.header.length : 0;
      if (this.buffered < need) break;
      frames.push({ header: this.header, payload: need === 0 ? EMPTY : this.take(need) });
      this.header = undefined;
    }
    return frames;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      this.buffered -= n;
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      if (!c) throw new Error('FrameParser: internal underflow');
      const use = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, use);
      filled += use;
      if (use === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(use);
    }
    this.buffered -= n;
    return out;
  }
}

const EMPTY = Buffer.alloc(0);

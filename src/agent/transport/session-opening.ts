// Host side of the agent channel: how a new connection to the guest port starts cleanly. The port
// is one byte stream across host connections, so the first bytes a new host reads may be frames the
// guest wrote for the previous host (a write blocked while no host was connected, what QEMU held
// back, frames the old session sent before the guest saw the new one). The host therefore opens
// with: SYN and RST for stream 1 (a stream id only a new session can open, so the guest ends the
// old session right there, see host-session-demux.ts), then a ping with a random id. The guest
// answers in order, so every byte before that ping's answer is stale and everything after it
// belongs to the new session, whose streams start at 3. A hashicorp/yamux peer just sees a stream
// opened and reset, and a ping.
import { HEADER_LENGTH, Flag, FrameType, encodeFrame } from './yamux-frame.js';

/** Stream 1 is spent on the opening; the session's own streams start after it. */
export const FIRST_STREAM_AFTER_OPENING = 3;

/** The frames a host sends first on a new connection; `pingId` must be unguessable. */
export function sessionOpening(pingId: number): Buffer {
  return Buffer.concat([
    encodeFrame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }),
    encodeFrame({ type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 1, length: 0 }),
    encodeFrame({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: pingId }),
  ]);
}

/** The 8 bytes a ping answer starts with; its id follows. */
const PING_ACK_PREFIX = encodeFrame({
  type: FrameType.Ping,
  flags: Flag.ACK,
  streamId: 0,
  length: 0,
}).subarray(0, 8);

/**
 * Reads what the guest sends after an opening and finds the answer to one of its pings. Stale bytes
 * may be cut anywhere (a frame split by a disconnect), so it looks at every offset, not per frame.
 */
export class OpeningAnswerScanner {
  private readonly pingIds = new Set<number>();
  private tail: Buffer = Buffer.alloc(0);
  private received = 0;
  /** Once the answer is found: how many bytes before it were thrown away as stale. */
  discarded = 0;

  /** An opening with this ping id was sent; its answer counts. */
  expect(pingId: number): void {
    this.pingIds.add(pingId);
  }

  /** Undefined while the answer has not come; then the bytes after it (the new session's). */
  push(chunk: Buffer): Buffer | undefined {
    this.received += chunk.length;
    const buf = this.tail.length === 0 ? chunk : Buffer.concat([this.tail, chunk]);
    for (let i = 0; i + HEADER_LENGTH <= buf.length; i++) {
      if (buf[i] !== PING_ACK_PREFIX[0] || !buf.subarray(i, i + 8).equals(PING_ACK_PREFIX)) {
        continue;
      }
      if (this.pingIds.has(buf.readUInt32BE(i + 8))) {
        this.discarded = this.received - (buf.length - i);
        this.tail = Buffer.alloc(0);
        return buf.subarray(i + HEADER_LENGTH);
      }
    }
    const keep = Math.min(buf.length, HEADER_LENGTH - 1);
    this.tail = Buffer.from(buf.subarray(buf.length - keep));
    return undefined;
  }
}

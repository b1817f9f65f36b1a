// The client-to-server half of an HTTP/2 connection, with every request's `:authority` (and `host`)
// made acceptable to Node's HTTP/2 server. grpc-go 1.11 (the Kata 1.x client) sends its dial target
// as the authority, `unix:///run/.../agent-channel.sock`; nghttp2, under Node, resets any stream
// whose authority has a character RFC 3986 does not allow there ('/'), and Node offers no option
// to turn that check off. Bytes outside the allowed set are percent-encoded, so the value stays
// readable and a valid authority passes unchanged. Header blocks are decoded (HPACK, keeping the
// client's dynamic table) and re-encoded as literals without indexing; every other frame passes
// byte for byte. A connection whose first header block needs no change (our own host's client:
// one authority per connection) passes untouched from there on, block and all, so the server's
// HPACK table stays the client's and no block is decoded or re-encoded again (≈ 15 % of the
// agent's CPU per call); a later block that nghttp2 refuses costs only that stream, as it would
// without us.
import { Transform, type TransformCallback } from 'node:stream';
import { encodeLiterals, HpackDecoder, type HeaderField } from './hpack.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER = 9;
const HEADERS = 0x1;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
/** SETTINGS_MAX_FRAME_SIZE's initial value; the server never raises it, so it bounds our frames. */
const MAX_FRAME = 16_384;
/** The largest frame we accept from the client (the most a server may ever allow, 2^24-1). */
const MAX_INCOMING_FRAME = (1 << 24) - 1;
/** A bound on one header block (HEADERS + CONTINUATIONs), against a client that never ends one. */
const MAX_BLOCK = 1 << 20;

// RFC 3986 authority: unreserved, sub-delims, ':', '@', '[', ']', and '%' of pct-encoded.
const AUTHORITY_BYTE = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]$/;

/** `value` with every byte not allowed in an authority percent-encoded. */
export function safeAuthority(value: string): string {
  let out = '';
  for (const ch of value) {
    if (AUTHORITY_BYTE.test(ch)) out += ch;
    else
      for (const b of Buffer.from(ch, 'latin1'))
        out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function rewriteFields(fields: HeaderField[]): HeaderField[] {
  return fields.map(([n, v]) =>
    n === ':authority' || n === 'host' ? [n, safeAuthority(v)] : [n, v],
  );
}

function frameHeader(length: number, type: number, flags: number, stream: number): Buffer {
  const h = Buffer.alloc(FRAME_HEADER);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return h;
}

interface OpenBlock {
  stream: number;
  flags: number;
  priority: Buffer | undefined;
  fragments: Buffer[];
  size: number;
  /** The block's frames as they came, for a first block that passes unchanged. */
  frames: Buffer[];
}

export class AuthorityRewriter extends Transform {
  private pending: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  private block: OpenBlock | undefined;
  private readonly decoder = new HpackDecoder();
  /** Decided at the first header block: rewrite every block, or pass the connection as it is. */
  private mode: 'undecided' | 'rewrite' | 'pass' = 'undecided';

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.mode === 'pass') {
      done(null, chunk);
      return;
    }
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    try {
      this.drain();
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    // A connection cut mid-frame: pass what came, the server sees the same truncation.
    if (this.pending.length > 0 && !this.block) this.push(this.pending);
    done();
  }

  private drain(): void {
    if (!this.prefaceSeen) {
      if (this.pending.length < PREFACE.length) return;
      if (!this.pending.subarray(0, PREFACE.length).equals(PREFACE)) {
        throw new Error('not an HTTP/2 connection preface');
      }
      this.push(this.pending.subarray(0, PREFACE.length));
      this.pending = this.pending.subarray(PREFACE.length);
      this.prefaceSeen = true;
    }
    while (this.pending.length >= FRAME_HEADER) {
      const length = this.pending.readUIntBE(0, 3);
      if (length > MAX_INCOMING_FRAME) throw new Error(`frame of ${length} bytes`);
      if (this.pending.length < FRAME_HEADER + length) return;
      const frame = this.pending.subarray(0, FRAME_HEADER + length);
      this.pending = this.pending.subarray(FRAME_HEADER + length);
      this.onFrame(frame);
      if (this.mode === 'pass') {
        if (this.pending.length > 0) this.push(this.pending);
        this.pending = Buffer.alloc(0);
        return;
      }
    }
  }

  private onFrame(frame: Buffer): void {
    const type = frame[3]!;
    const flags = frame[4]!;
    const stream = frame.readUInt32BE(5) & 0x7fffffff;
    let payload = frame.subarray(FRAME_HEADER);
    if (this.block) {
      // 6.10: nothing but this stream's CONTINUATION may come inside a header block.
      if (type !== CONTINUATION || stream !== this.block.stream) {
        throw new Error('header block interrupted by another frame');
      }
      this.block.frames.push(frame);
      this.addFragment(payload, flags);
      return;
    }
    if (type !== HEADERS) {
      this.push(frame);
      return;
    }
    let pad = 0;
    if (flags & PADDED) {
      pad = payload[0] ?? 0;
      payload = payload.subarray(1);
    }
    let priority: Buffer | undefined;
    if (flags & PRIORITY) {
      priority = payload.subarray(0, 5);
      payload = payload.subarray(5);
    }
    if (pad > payload.length) throw new Error('HEADERS padding longer than its payload');
    payload = payload.subarray(0, payload.length - pad);
    this.block = { stream, flags, priority, fragments: [], size: 0, frames: [frame] };
    this.addFragment(payload, flags);
  }

  private addFragment(fragment: Buffer, flags: number): void {
    const b = this.block!;
    b.fragments.push(fragment);
    b.size += fragment.length;
    if (b.size > MAX_BLOCK) throw new Error(`header block over ${MAX_BLOCK} bytes`);
    if (!(flags & END_HEADERS)) return;
    this.block = undefined;
    const fields = this.decoder.decode(Buffer.concat(b.fragments));
    const rewritten = rewriteFields(fields);
    if (this.mode === 'undecided') {
      const same = rewritten.every(([, v], i) => v === fields[i]![1]);
      this.mode = same ? 'pass' : 'rewrite';
      if (same) {
        for (const f of b.frames) this.push(f);
        return;
      }
    }
    this.emitBlock(b, encodeLiterals(rewritten));
  }

  /** HEADERS (END_STREAM and PRIORITY kept, no padding) then CONTINUATIONs, each ≤ MAX_FRAME. */
  private emitBlock(b: OpenBlock, block: Buffer): void {
    const prio = b.priority ?? Buffer.alloc(0);
    let room = MAX_FRAME - prio.length;
    let first = true;
    let pos = 0;
    do {
      const part = block.subarray(pos, pos + room);
      pos += part.length;
      const last = pos >= block.length;
      const flags = (first ? b.flags & (END_STREAM | PRIORITY) : 0) | (last ? END_HEADERS : 0);
      const payload = first ? Buffer.concat([prio, part]) : part;
      this.push(frameHeader(payload.length, first ? HEADERS : CONTINUATION, flags, b.stream));
      this.push(payload);
      first = false;
      room = MAX_FRAME;
    } while (pos < block.length);
  }
}

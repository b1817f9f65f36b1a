// Our generated code holds 64-bit integers as JavaScript numbers and refuses to decode one above
// 2^53. A Kata 1.x agent reports "no memory limit" as 2^63 − 4096 (cgroup v1's value), so its
// StatsContainer answers are clamped on the wire before they are decoded: every varint of the
// message above Number.MAX_SAFE_INTEGER becomes MAX_SAFE_INTEGER, which still reads as "no limit".
import { StatsContainerResponse } from '../generated/agent.js';

/** Field number → the nested message it holds ("packed" for packed repeated integers). */
type Shape = { [field: number]: Shape | 'packed' };

const MEMORY_DATA: Shape = {};
const BLKIO_ENTRY: Shape = {};
/** StatsContainerResponse's message fields, from proto/agent.proto (maps are entry messages). */
const STATS_RESPONSE: Shape = {
  1: {
    1: { 1: { 2: 'packed' }, 2: {} },
    2: { 2: MEMORY_DATA, 3: MEMORY_DATA, 4: MEMORY_DATA, 6: {} },
    3: {},
    4: Object.fromEntries([1, 2, 3, 4, 5, 6, 7, 8].map((f) => [f, BLKIO_ENTRY])),
    5: { 2: {} },
  },
  2: {},
};

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function readVarint(buf: Uint8Array, pos: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (;;) {
    const b = buf[pos++];
    if (b === undefined) throw new Error('truncated varint');
    value |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [value, pos];
    shift += 7n;
    if (shift > 63n) throw new Error('varint too long');
  }
}

function varint(value: bigint): number[] {
  const out: number[] = [];
  let v = value;
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

const clampVarint = (v: bigint): number[] => varint(v > MAX_SAFE ? MAX_SAFE : v);

function clampPacked(buf: Uint8Array): number[] {
  const out: number[] = [];
  for (let pos = 0; pos < buf.length;) {
    const [v, next] = readVarint(buf, pos);
    out.push(...clampVarint(v));
    pos = next;
  }
  return out;
}

/** The message's bytes with every too-wide varint clamped (pure; unknown fields kept as they are). */
export function clampWideIntegers(buf: Uint8Array, shape: Shape = STATS_RESPONSE): Uint8Array {
  const out: number[] = [];
  for (let pos = 0; pos < buf.length;) {
    const [tag, afterTag] = readVarint(buf, pos);
    out.push(...varint(tag));
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    pos = afterTag;
    if (wire === 0) {
      const [v, next] = readVarint(buf, pos);
      out.push(...clampVarint(v));
      pos = next;
    } else if (wire === 2) {
      const [len, start] = readVarint(buf, pos);
      const end = start + Number(len);
      if (end > buf.length) throw new Error('truncated field');
      const body = buf.subarray(start, end);
      const inner = shape[field];
      const bytes =
        inner === 'packed'
          ? clampPacked(body)
          : inner
            ? [...clampWideIntegers(body, inner)]
            : [...body];
      out.push(...varint(BigInt(bytes.length)), ...bytes);
      pos = end;
    } else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      out.push(...buf.subarray(pos, pos + n));
      pos += n;
    } else {
      throw new Error(`wire type ${wire} is not supported`);
    }
  }
  return Uint8Array.from(out);
}

/** Decodes a StatsContainer answer, a 1.x agent's included. */
export function decodeStatsResponse(buf: Uint8Array): StatsContainerResponse {
  return StatsContainerResponse.decode(clampWideIntegers(buf));
}

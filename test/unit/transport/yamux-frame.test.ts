import { describe, expect, it } from '@jest/globals';
import {
  Flag,
  FrameParser,
  FrameType,
  GoAwayCode,
  YamuxProtocolError,
  decodeHeader,
  encodeFrame,
  encodeHeader,
  type Frame,
} from '../../../src/agent/transport/yamux-frame.js';

const hex = (b: Buffer) => b.toString('hex');

describe('yamux header codec', () => {
  it.each([
    [
      'data SYN stream 1, 5 bytes',
      { type: FrameType.Data, flags: Flag.SYN, streamId: 1, length: 5 },
      '000000010000000100000005',
    ],
    [
      'window update ACK stream 2, +256 KiB',
      { type: FrameType.WindowUpdate, flags: Flag.ACK, streamId: 2, length: 262144 },
      '000100020000000200040000',
    ],
    [
      'ping SYN opaque 0x01020304',
      { type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: 0x01020304 },
      '000200010000000001020304',
    ],
    [
      'go away, protocol error',
      { type: FrameType.GoAway, flags: 0, streamId: 0, length: GoAwayCode.ProtocolError },
      '000300000000000000000001',
    ],
    [
      'FIN|RST, max stream id',
      { type: FrameType.Data, flags: Flag.FIN | Flag.RST, streamId: 0xffffffff, length: 0 },
      '0000000cffffffff00000000',
    ],
  ])('%s', (_name, header, golden) => {
    expect(hex(encodeHeader(header))).toBe(golden);
    expect(decodeHeader(Buffer.from(golden, 'hex'))).toEqual({ version: 0, ...header });
  });

  it('refuses a bad version, an unknown type and a short buffer', () => {
    expect(() => decodeHeader(Buffer.from('010000000000000000000000', 'hex'))).toThrow(
      YamuxProtocolError,
    );
    expect(() => decodeHeader(Buffer.from('000400000000000000000000', 'hex'))).toThrow(
      /unknown frame type 4/,
    );
    expect(() => decodeHeader(Buffer.alloc(11))).toThrow(/needs 12 bytes/);
  });

  it('refuses out-of-range fields and a payload on a non-data frame', () => {
    expect(() => encodeHeader({ type: 0, flags: 0, streamId: 2 ** 32, length: 0 })).toThrow(
      RangeError,
    );
    expect(() => encodeHeader({ type: 0, flags: 0, streamId: 1, length: -1 })).toThrow(RangeError);
    expect(() =>
      encodeFrame({ type: FrameType.Ping, flags: 0, streamId: 0, length: 1 }, Buffer.from('x')),
    ).toThrow(/only data frames/);
  });
});

describe('FrameParser', () => {
  const frames: Array<[Parameters<typeof encodeFrame>[0], Buffer | undefined]> = [
    [{ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }, undefined],
    [{ type: FrameType.Data, flags: 0, streamId: 1, length: 7 }, Buffer.from('payload')],
    // A window update's length is a delta, not a payload: nothing follows it.
    [{ type: FrameType.WindowUpdate, flags: 0, streamId: 1, length: 262144 }, undefined],
    [{ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: 99 }, undefined],
    [{ type: FrameType.Data, flags: Flag.FIN, streamId: 3, length: 3 }, Buffer.from('end')],
    [{ type: FrameType.Data, flags: Flag.FIN, streamId: 5, length: 0 }, undefined],
    [{ type: FrameType.GoAway, flags: 0, streamId: 0, length: 0 }, undefined],
  ];
  const wire = Buffer.concat(frames.map(([h, p]) => encodeFrame(h, p)));
  const expected = frames.map(([h, p]) => ({
    header: { version: 0, ...h },
    payload: p ?? Buffer.alloc(0),
  }));
  const norm = (fs: Frame[]) =>
    fs.map((f) => ({ header: f.header, payload: Buffer.from(f.payload) }));

  it('parses a whole buffer', () => {
    expect(norm(new FrameParser().push(wire))).toEqual(expected);
  });

  it('parses the stream split into two at every byte boundary', () => {
    for (let i = 0; i <= wire.length; i++) {
      const p = new FrameParser();
      const got = [...p.push(wire.subarray(0, i)), ...p.push(wire.subarray(i))];
      expect(norm(got)).toEqual(expected);
      expect(p.pendingBytes).toBe(0);
    }
  });

  it('parses the stream split into three at every pair of boundaries', () => {
    // One comparison per split as a string keeps the ~10k cases fast.
    const want = JSON.stringify(norm(expected as Frame[]));
    const bad: string[] = [];
    for (let i = 0; i <= wire.length; i++) {
      for (let j = i; j <= wire.length; j++) {
        const p = new FrameParser();
        const got = [
          ...p.push(wire.subarray(0, i)),
          ...p.push(wire.subarray(i, j)),
          ...p.push(wire.subarray(j)),
        ];
        if (JSON.stringify(norm(got)) !== want) bad.push(`${i},${j}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('parses the stream fed one byte at a time', () => {
    const p = new FrameParser();
    const got: Frame[] = [];
    for (let i = 0; i < wire.length; i++) got.push(...p.push(wire.subarray(i, i + 1)));
    expect(norm(got)).toEqual(expected);
  });

  it('refuses a data frame longer than its limit', () => {
    const p = new FrameParser(1024);
    expect(() =>
      p.push(encodeHeader({ type: FrameType.Data, flags: 0, streamId: 1, length: 1025 })),
    ).toThrow(/exceeds limit 1024/);
  });
});

import { describe, expect, it } from '@jest/globals';
import {
  OpeningAnswerScanner,
  sessionOpening,
} from '../../../src/agent/transport/session-opening.js';
import { Flag, FrameType, encodeFrame } from '../../../src/agent/transport/yamux-frame.js';

const pingAck = (n: number) =>
  encodeFrame({ type: FrameType.Ping, flags: Flag.ACK, streamId: 0, length: n });
const data = (id: number, text: string) => {
  const payload = Buffer.from(text);
  return encodeFrame(
    { type: FrameType.Data, flags: 0, streamId: id, length: payload.length },
    payload,
  );
};
const fin = (id: number) =>
  encodeFrame({ type: FrameType.WindowUpdate, flags: Flag.FIN, streamId: id, length: 0 });

function scan(scanner: OpeningAnswerScanner, input: Buffer, cut: number): Buffer | undefined {
  let rest: Buffer | undefined;
  for (let i = 0; i < input.length && !rest; i += cut) {
    rest = scanner.push(input.subarray(i, Math.min(input.length, i + cut)));
    if (rest) {
      // What the scanner has not looked at yet comes after.
      return Buffer.concat([rest, input.subarray(Math.min(input.length, i + cut))]);
    }
  }
  return rest;
}

describe('sessionOpening', () => {
  it('is SYN and RST for stream 1 (window updates), then a ping with the id', () => {
    expect(sessionOpening(0xdeadbeef).toString('hex')).toBe(
      '000100010000000100000000' + '000100080000000100000000' + '0002000100000000deadbeef',
    );
  });
});

describe('OpeningAnswerScanner', () => {
  const fresh = Buffer.concat([data(3, 'answer for this host'), fin(3)]);

  it('throws away what the guest wrote for an earlier host, cut frames included', () => {
    // A stale answer for the previous host's stream 3, cut mid-payload, an old ping answer, then
    // the answer to our opening and the new session's frames.
    const stale = Buffer.concat([data(3, 'answer for the old host').subarray(0, 17), pingAck(7)]);
    const input = Buffer.concat([stale, pingAck(0xcafe0001), fresh]);
    for (const cut of [1, 5, 12, 13, 1000]) {
      const scanner = new OpeningAnswerScanner();
      scanner.expect(0xcafe0001);
      expect(scan(scanner, input, cut)).toEqual(fresh);
      expect(scanner.discarded).toBe(stale.length);
    }
  });

  it('takes the answer to any opening it sent on this connection', () => {
    const scanner = new OpeningAnswerScanner();
    scanner.expect(11);
    scanner.expect(22);
    expect(scan(scanner, Buffer.concat([pingAck(11), fresh]), 1000)).toEqual(fresh);
  });

  it('waits while no answer to its own ping has come', () => {
    const scanner = new OpeningAnswerScanner();
    scanner.expect(5);
    expect(scanner.push(Buffer.concat([pingAck(6), fresh]))).toBeUndefined();
    expect(scanner.push(pingAck(5))).toEqual(Buffer.alloc(0));
  });
});

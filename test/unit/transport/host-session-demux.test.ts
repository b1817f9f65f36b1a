import { describe, expect, it } from '@jest/globals';
import {
  HostSessionDemux,
  HostStreamIds,
  implausibleHeader,
  type DemuxEvent,
} from '../../../src/agent/transport/host-session-demux.js';
import { Flag, FrameType, encodeFrame } from '../../../src/agent/transport/yamux-frame.js';
import { sessionOpening } from '../../../src/agent/transport/session-opening.js';

// Byte fixtures: frames as a host writes them.
const syn = (id: number) =>
  encodeFrame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: id, length: 0 });
const data = (id: number, text: string, flags = 0) => {
  const payload = Buffer.from(text);
  return encodeFrame(
    { type: FrameType.Data, flags, streamId: id, length: payload.length },
    payload,
  );
};
const fin = (id: number) => data(id, '', Flag.FIN);
const ping = (n: number) =>
  encodeFrame({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: n });
const goAway = () => encodeFrame({ type: FrameType.GoAway, flags: 0, streamId: 0, length: 0 });

/** What the demux makes of `bytes` fed in `cuts`-sized pieces: sessions as byte strings. */
function sessionsOf(demux: HostSessionDemux, input: Buffer, cut = input.length): Summary {
  const events: DemuxEvent[] = [];
  for (let i = 0; i < input.length; i += cut) {
    events.push(...demux.push(input.subarray(i, Math.min(input.length, i + cut))));
  }
  return summarise(events);
}

interface Summary {
  /** Bytes of each session, in order (the first is whatever came before any boundary). */
  sessions: Buffer[];
  boundaries: string[];
}

function summarise(events: DemuxEvent[]): Summary {
  const sessions: Buffer[][] = [[]];
  const boundaries: string[] = [];
  for (const ev of events) {
    if (ev.kind === 'frames') sessions[sessions.length - 1]!.push(ev.bytes);
    else {
      boundaries.push(`${ev.kind}: ${ev.reason}`);
      sessions.push([]);
    }
  }
  return { sessions: sessions.map((s) => Buffer.concat(s)), boundaries };
}

const cat = (...bufs: Buffer[]) => Buffer.concat(bufs);

describe('HostStreamIds', () => {
  it('takes increasing odd ids, remembers skipped ones, refuses reused ones', () => {
    const ids = new HostStreamIds();
    expect(ids.canOpen(1)).toBe(true);
    ids.open(1);
    ids.open(5); // 3 skipped: a host may send concurrent SYNs out of order
    expect(ids.canOpen(3)).toBe(true);
    ids.open(3);
    expect(ids.canOpen(3)).toBe(false);
    expect(ids.canOpen(1)).toBe(false);
    expect(ids.canOpen(5)).toBe(false);
    expect(ids.canOpen(7)).toBe(true);
    ids.goAway();
    expect(ids.canOpen(7)).toBe(false);
  });
});

describe('implausibleHeader', () => {
  it('passes every frame a yamux client sends', () => {
    const dataHeader = data(3, 'x').subarray(0, 12);
    for (const f of [syn(1), dataHeader, fin(3), ping(7), goAway(), sessionOpening(42)]) {
      for (let at = 0; at < f.length; at += 12) {
        expect(implausibleHeader(f.subarray(at, at + 12))).toBeUndefined();
      }
    }
  });

  it.each([
    ['version', Buffer.from('010100010000000100000000', 'hex'), 'version 1'],
    ['type', Buffer.from('000400000000000000000000', 'hex'), 'frame type 4'],
    ['flags', Buffer.from('000100100000000100000000', 'hex'), 'flags 0x10'],
    ['data on stream 0', Buffer.from('000000000000000000000001', 'hex'), 'stream 0'],
    ['SYN with the guest parity', Buffer.from('000100010000000200000000', 'hex'), 'even'],
    ['oversized data', Buffer.from('000000000000000300040001', 'hex'), 'window'],
    ['ping on a stream', Buffer.from('000200010000000300000000', 'hex'), 'stream 3'],
    ['ping with RST', Buffer.from('000200080000000000000000', 'hex'), 'ping flags'],
    ['unknown go-away code', Buffer.from('000300000000000000000007', 'hex'), 'go-away 7'],
  ])('refuses %s', (_name, header, why) => {
    expect(implausibleHeader(header)).toContain(why);
  });
});

describe('HostSessionDemux', () => {
  const host1 = cat(syn(1), data(1, 'request of host 1'), syn(3), data(3, 'another'), fin(1));
  const host2 = cat(syn(1), data(1, 'request of host 2'), ping(9));

  it('passes one host session through untouched, however the reads cut it', () => {
    for (const cut of [1, 5, 12, 13, 1000]) {
      const { sessions, boundaries } = sessionsOf(new HostSessionDemux(), host1, cut);
      expect(boundaries).toEqual([]);
      expect(sessions).toEqual([host1]);
    }
  });

  it('a SYN for stream 1 mid-session starts a new session; the old bytes stay in the old one', () => {
    for (const cut of [1, 7, 12, 1000]) {
      const { sessions, boundaries } = sessionsOf(new HostSessionDemux(), cat(host1, host2), cut);
      expect(boundaries).toEqual([
        'new-session: SYN for stream 1, which the live session cannot open',
      ]);
      expect(sessions).toEqual([host1, host2]);
    }
  });

  it('a SYN for any id the session already used is a new session too, and so is any SYN after go-away', () => {
    const reused = sessionsOf(new HostSessionDemux(), cat(syn(1), syn(3), syn(3), data(3, 'x')));
    expect(reused.sessions).toEqual([cat(syn(1), syn(3)), cat(syn(3), data(3, 'x'))]);

    const after = sessionsOf(new HostSessionDemux(), cat(syn(1), goAway(), syn(7)));
    expect(after.sessions).toEqual([cat(syn(1), goAway()), syn(7)]);
    expect(after.boundaries).toEqual([
      'new-session: SYN for stream 7, which the live session cannot open',
    ]);
  });

  it('SYNs sent out of order by one host stay in one session', () => {
    const input = cat(syn(1), syn(5), syn(3), data(3, 'late'), syn(7));
    const { sessions, boundaries } = sessionsOf(new HostSessionDemux(), input);
    expect(boundaries).toEqual([]);
    expect(sessions).toEqual([input]);
  });

  it("a SYN 1 inside a data frame's payload is data, not a new session", () => {
    const sneaky = cat(syn(1), data(1, syn(1).toString('latin1')), data(1, 'more'));
    for (const cut of [1, 3, 1000]) {
      expect(sessionsOf(new HostSessionDemux(), sneaky, cut)).toEqual({
        sessions: [sneaky],
        boundaries: [],
      });
    }
  });

  it('the opening a bridge sends ends the live session at its first byte', () => {
    const opening = sessionOpening(0x1234_5678);
    const { sessions } = sessionsOf(new HostSessionDemux(), cat(host1, opening, syn(3)));
    expect(sessions).toEqual([host1, cat(opening, syn(3))]);
  });

  it('after EOF, a frame the old host left half-read is dropped and the next host starts clean', () => {
    const demux = new HostSessionDemux();
    const cutFrame = data(1, 'a long payload cut by the disconnect');
    const first = sessionsOf(demux, cat(host1, cutFrame.subarray(0, 20)));
    demux.hostGone();
    const second = sessionsOf(demux, host2);
    expect(second.sessions).toEqual([host2]);
    expect(second.boundaries).toEqual([]);
    // The old session got its whole frames and the part of the cut one that came.
    expect(Buffer.concat(first.sessions)).toEqual(cat(host1, cutFrame.subarray(0, 20)));
  });

  it('without EOF, a header cut by the disconnect makes garbage; resync finds the new host', () => {
    // 5 bytes of a header, then the next host: those bytes read as a header say nothing sane.
    const cutHeader = data(1, 'zzz').subarray(0, 5);
    for (const cut of [1, 4, 12, 1000]) {
      const { sessions, boundaries } = sessionsOf(
        new HostSessionDemux(),
        cat(host1, cutHeader, host2),
        cut,
      );
      expect(boundaries).toHaveLength(1);
      expect(boundaries[0]).toMatch(/^garbage: not a yamux frame/);
      expect(sessions).toEqual([host1, host2]);
    }
  });

  it('without EOF, garbage drops everything up to the next SYN 1, which may straddle reads', () => {
    const junk = Buffer.from('ffffffffffffffffffffffff0001', 'hex');
    for (const cut of [1, 2, 5, 9, 13, 1000]) {
      const { sessions } = sessionsOf(new HostSessionDemux(), cat(junk, host2), cut);
      expect(sessions).toEqual([Buffer.alloc(0), host2]);
    }
  });

  it('after its session failed on its own, waits for the next SYN 1', () => {
    const demux = new HostSessionDemux();
    sessionsOf(demux, cat(syn(1), data(1, 'x')));
    demux.sessionFailed();
    expect(demux.inResync).toBe(true);
    const { sessions } = sessionsOf(demux, cat(data(1, 'more of the failed one'), syn(3), host2));
    expect(sessions).toEqual([host2]);
    expect(demux.inResync).toBe(false);
  });
});

import { afterEach, describe, expect, it } from '@jest/globals';
import type { Duplex } from 'node:stream';
import { servePortIo } from '../../../src/agent/transport/guest-port.js';
import { YamuxSession, type YamuxStream } from '../../../src/agent/transport/yamux-session.js';
import { duplexPair, FakePort, quiet, waitFor } from './helpers.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A host connecting to the port: its own yamux client session. */
function connectHost(port: FakePort): YamuxSession {
  const [hostSide, portSide] = duplexPair();
  port.connectHost(portSide);
  const session = new YamuxSession(hostSide, { role: 'client' });
  cleanups.push(() => session.destroy());
  return session;
}

async function roundTrip(s: Duplex, text: string): Promise<string> {
  const got = new Promise<string>((resolve) =>
    s.once('data', (c: Buffer) => resolve(c.toString())),
  );
  s.write(text);
  return got;
}

function serve(port: FakePort) {
  const ac = new AbortController();
  const starts: YamuxSession[] = [];
  const ends: Array<Error | undefined> = [];
  const boundaries: string[] = [];
  const guestStreams: YamuxStream[] = [];
  const done = servePortIo(
    port,
    (s) => {
      guestStreams.push(quiet(s));
      s.pipe(s);
    },
    ac.signal,
    {
      eofPollMs: 1,
      onSessionStart: (session) => starts.push(session),
      onSessionEnd: (err) => ends.push(err),
      onSessionBoundary: (reason) => boundaries.push(reason),
    },
  );
  cleanups.push(() => ac.abort());
  return { ac, starts, ends, boundaries, guestStreams, done };
}

describe('servePortIo', () => {
  it('keeps reading through EOFs while no host is connected, without starting a session', async () => {
    const port = new FakePort();
    const { starts, ac, done } = serve(port);
    await waitFor(() => port.eofReads >= 5);
    expect(starts).toHaveLength(0);
    ac.abort();
    await done;
  });

  it('serves a host, and a fresh session after the host goes away and comes back', async () => {
    const port = new FakePort();
    const { starts, ends, guestStreams } = serve(port);

    const host1 = connectHost(port);
    const a = quiet(host1.open());
    expect(await roundTrip(a, 'first host')).toBe('first host');
    expect(starts).toHaveLength(1);

    // The node agent dies: the guest sees only EOF.
    port.disconnectHost();
    host1.destroy();
    await waitFor(() => ends.length === 1);
    expect(ends[0]?.message).toMatch(/ended|closed/);
    await waitFor(() => guestStreams[0]!.destroyed);

    // A new node agent numbers its streams from 1 again; the guest must not see a duplicate.
    const host2 = connectHost(port);
    const b = quiet(host2.open());
    expect(b.id).toBe(1);
    expect(await roundTrip(b, 'second host')).toBe('second host');
    expect(starts).toHaveLength(2);
    const c = quiet(host2.open());
    expect(await roundTrip(c, 'and another stream')).toBe('and another stream');
  });

  it('survives several host restarts in a row', async () => {
    const port = new FakePort();
    const { starts } = serve(port);
    for (let i = 1; i <= 3; i++) {
      const host = connectHost(port);
      const s = quiet(host.open());
      expect(await roundTrip(s, `round ${i}`)).toBe(`round ${i}`);
      port.disconnectHost();
      host.destroy();
    }
    expect(starts).toHaveLength(3);
  });

  it('answers garbage with a protocol-error go-away, then serves the next host afresh', async () => {
    const port = new FakePort();
    const { starts, boundaries } = serve(port);
    const [raw, portSide] = duplexPair();
    port.connectHost(portSide);
    const reply = new Promise<Buffer>((resolve) => raw.once('data', resolve));
    raw.write(Buffer.from('not yamux at all'));
    expect((await reply).toString('hex')).toBe('000300000000000000000001');
    expect(boundaries).toEqual(['not a yamux frame (version 110)']);
    // Garbage never became a session.
    expect(starts).toHaveLength(0);
    port.disconnectHost();

    const host = connectHost(port);
    const s = quiet(host.open());
    expect(await roundTrip(s, 'clean')).toBe('clean');
    expect(starts).toHaveLength(1);
  });

  it('stops when the signal aborts, even with a read pending', async () => {
    const port = new FakePort();
    const { ac, done } = serve(port);
    const host = connectHost(port);
    const s = quiet(host.open());
    expect(await roundTrip(s, 'x')).toBe('x');
    ac.abort();
    await done;
  });
});

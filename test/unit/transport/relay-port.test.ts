import { afterEach, describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { servePortIo } from '../../../src/agent/transport/guest-port.js';
import { RelayConnections, servePortViaRelay } from '../../../src/agent/transport/relay-port.js';
import { YamuxSession, type YamuxStream } from '../../../src/agent/transport/yamux-session.js';
import { quiet, socketPair, tempDir, waitFor } from './helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function scratch(): Promise<string> {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  return dir;
}

async function roundTrip(s: Duplex, text: string): Promise<string> {
  const got = new Promise<string>((resolve) =>
    s.once('data', (c: Buffer) => resolve(c.toString())),
  );
  s.write(text);
  return got;
}

/** The relay's end of one host session's connection, with that host's yamux client on it. */
async function relayConnection(conns: RelayConnections, dir: string) {
  const [relayEnd, agentEnd] = await socketPair(dir);
  conns.add(agentEnd);
  const host = new YamuxSession(relayEnd, { role: 'client' });
  cleanups.push(() => host.destroy());
  return { relayEnd, host };
}

function serve(conns: RelayConnections) {
  const ac = new AbortController();
  const starts: YamuxSession[] = [];
  const ends: Array<Error | undefined> = [];
  const guestStreams: YamuxStream[] = [];
  const done = servePortIo(
    conns,
    (s) => {
      guestStreams.push(quiet(s));
      s.pipe(s);
    },
    ac.signal,
    {
      eofPollMs: 0,
      onSessionStart: (s) => starts.push(s),
      onSessionEnd: (e) => ends.push(e),
    },
  );
  cleanups.push(async () => {
    ac.abort();
    await done;
    await conns.close();
  });
  return { starts, ends, guestStreams };
}

describe('RelayConnections (one relay connection per host session)', () => {
  it('serves each connection as its own session, streams numbered from 1 each time', async () => {
    const dir = await scratch();
    const conns = new RelayConnections();
    const { starts, ends } = serve(conns);
    for (let i = 1; i <= 3; i++) {
      const { relayEnd, host } = await relayConnection(conns, dir);
      const s = quiet(host.open());
      expect(s.id).toBe(1);
      expect(await roundTrip(s, `host ${i}`)).toBe(`host ${i}`);
      // The relay saw the host leave: it closes the connection.
      relayEnd.destroy();
      await waitFor(() => ends.length === i);
    }
    expect(starts).toHaveLength(3);
  });

  it('drops what the gone session still writes: the next connection gets none of it', async () => {
    const dir = await scratch();
    const conns = new RelayConnections();
    const { guestStreams, ends } = serve(conns);
    const first = await relayConnection(conns, dir);
    const s = quiet(first.host.open());
    expect(await roundTrip(s, 'ping')).toBe('ping');
    const guestStream = guestStreams[0]!;
    first.relayEnd.destroy();
    await waitFor(() => ends.length === 1);

    const [relayEnd2, agentEnd2] = await socketPair(dir);
    const seen: Buffer[] = [];
    relayEnd2.on('data', (c: Buffer) => seen.push(c));
    conns.add(agentEnd2);
    // The old session's stream writes after its host is gone (it was destroyed; a write is
    // refused or dropped, never sent).
    if (!guestStream.destroyed) guestStream.write('stale');
    await conns.write(Buffer.from('stale raw write between sessions'));
    const host2 = new YamuxSession(relayEnd2, { role: 'client' });
    cleanups.push(() => host2.destroy());
    const s2 = quiet(host2.open());
    expect(await roundTrip(s2, 'fresh')).toBe('fresh');
    expect(Buffer.concat(seen).includes('stale')).toBe(false);
  });

  it('sends the writes of one turn of the event loop to the relay in one write, in order', async () => {
    const dir = await scratch();
    const conns = new RelayConnections();
    const [relayEnd, agentEnd] = await socketPair(dir);
    cleanups.push(() => void relayEnd.destroy());
    cleanups.push(() => conns.close());
    conns.add(agentEnd);
    relayEnd.write('host');
    await conns.read(Buffer.alloc(16)); // writes go to the connection being read
    const writes: number[] = [];
    const socket = agentEnd as Socket & {
      _write: (...a: unknown[]) => void;
      _writev: (...a: unknown[]) => void;
    };
    const [write, writev] = [socket._write, socket._writev];
    socket._write = (...a) => (writes.push(1), write.apply(socket, a));
    socket._writev = (chunks, ...rest) => (
      writes.push((chunks as unknown[]).length),
      writev.apply(socket, [chunks, ...rest])
    );
    let got = '';
    relayEnd.on('data', (c: Buffer) => (got += c.toString()));
    for (const frame of ['headers|', 'data|', 'window|']) await conns.write(Buffer.from(frame));
    await conns.write(Buffer.from('later|')).then(() => new Promise((r) => setImmediate(r)));
    await conns.write(Buffer.from('next turn'));
    await waitFor(() => got.length === 'headers|data|window|later|next turn'.length);
    expect(got).toBe('headers|data|window|later|next turn');
    expect(writes).toEqual([4, 1]);
  });

  it('stops reading a connection whose bytes are not taken, and resumes', async () => {
    const dir = await scratch();
    const conns = new RelayConnections();
    const [relayEnd, agentEnd] = await socketPair(dir);
    cleanups.push(() => void relayEnd.destroy());
    conns.add(agentEnd);
    const big = Buffer.alloc(1024 * 1024, 7);
    relayEnd.write(big);
    await waitFor(() => agentEnd.isPaused());
    const buf = Buffer.alloc(64 * 1024);
    let total = 0;
    while (total < big.length) total += await conns.read(buf);
    expect(total).toBe(big.length);
    expect(agentEnd.isPaused()).toBe(false);
    await conns.close();
  });
});

describe('servePortViaRelay', () => {
  /** A stand-in relay: a node script; `body` runs with ARGS (its argv after the script). */
  function fakeRelay(dir: string, body: string): string {
    const file = join(dir, 'fake-relay.cjs');
    writeFileSync(file, `#!${process.execPath}\nconst ARGS = process.argv.slice(2);\n${body}\n`, {
      mode: 0o755,
    });
    return file;
  }

  it('starts the relay on the device and its own socket (mode 0600), and stops it on abort', async () => {
    const dir = await scratch();
    const socketPath = join(dir, 'relay.sock');
    const argvFile = join(dir, 'argv');
    const relayPath = fakeRelay(
      dir,
      `require('fs').writeFileSync(${JSON.stringify(argvFile)}, JSON.stringify({ args: ARGS, pid: process.pid }));
       setInterval(() => {}, 1000);`,
    );
    const ac = new AbortController();
    const done = servePortViaRelay(
      { relayPath, device: '/dev/vport9p9', socketPath },
      () => {},
      ac.signal,
    );
    await waitFor(() => existsSync(argvFile) && readFileSync(argvFile, 'utf8').length > 0);
    const { args, pid } = JSON.parse(readFileSync(argvFile, 'utf8')) as {
      args: string[];
      pid: number;
    };
    expect(args).toEqual(['--port', '/dev/vport9p9', '--agent', socketPath]);
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    ac.abort();
    await done;
    expect(existsSync(socketPath)).toBe(false);
    await waitFor(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
  });

  it('carries a host session from the relay connection', async () => {
    const dir = await scratch();
    const socketPath = join(dir, 'relay.sock');
    const relayPath = fakeRelay(dir, 'setInterval(() => {}, 1000);');
    const ac = new AbortController();
    const done = servePortViaRelay(
      { relayPath, device: '/dev/null', socketPath },
      (s) => {
        quiet(s);
        s.pipe(s);
      },
      ac.signal,
    );
    cleanups.push(async () => {
      ac.abort();
      await done;
    });
    await waitFor(() => existsSync(socketPath));
    const sock: Socket = connect(socketPath);
    await once(sock, 'connect');
    const host = new YamuxSession(sock, { role: 'client' });
    cleanups.push(() => host.destroy());
    expect(await roundTrip(quiet(host.open()), 'through the relay socket')).toBe(
      'through the relay socket',
    );
  });

  it('fails, naming the status, when the relay exits', async () => {
    const dir = await scratch();
    const relayPath = fakeRelay(dir, 'process.exit(3);');
    await expect(
      servePortViaRelay(
        { relayPath, device: '/dev/null', socketPath: join(dir, 'r.sock') },
        () => {},
        new AbortController().signal,
      ),
    ).rejects.toThrow('kata-port-relay exited (status 3)');
  });

  it('fails, naming the path, when the relay cannot be started', async () => {
    const dir = await scratch();
    const relayPath = join(dir, 'no-such-relay');
    await expect(
      servePortViaRelay(
        { relayPath, device: '/dev/null', socketPath: join(dir, 'r.sock') },
        () => {},
        new AbortController().signal,
      ),
    ).rejects.toThrow(`kata-port-relay ${relayPath} did not start`);
  });
});

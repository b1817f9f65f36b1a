import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { connectivityState, type Client, type Server as GrpcServer } from '@grpc/grpc-js';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { servePortIo } from '../../../src/agent/transport/guest-port.js';
import { SerialBridge } from '../../../src/agent/transport/serial-bridge.js';
import { serveStreamsOn } from '../../../src/agent/transport/stream-to-server.js';
import { YamuxSession } from '../../../src/agent/transport/yamux-session.js';
import { callEcho, echoClient, startEchoServer, stopServer } from './grpc-echo.js';
import { FakePort, tempDir, waitFor } from './helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
const teardown: Array<() => Promise<void> | void> = [];

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});

afterEach(async () => {
  for (const t of teardown.splice(0).reverse()) await t();
  await cleanup();
});

/**
 * QEMU's chardev, simulated: a unix socket server taking one client, whose bytes go to the guest.
 * Here the "guest" is a yamux server session forwarding each stream to a grpc-js server.
 */
async function startFakeQemu(chardevPath: string, guestServer: GrpcServer) {
  const onStream = serveStreamsOn(guestServer);
  const conns = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (sock) => {
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    new YamuxSession(sock, { role: 'server', onStream });
  });
  server.listen(chardevPath);
  await once(server, 'listening');
  const kill = async () => {
    const closed = new Promise((r) => server.close(r));
    for (const c of conns) c.destroy();
    await closed;
  };
  teardown.push(kill);
  return { kill };
}

async function startBridge(chardevPath: string, listenPath: string) {
  const bridge = await SerialBridge.start({
    chardevPath,
    listenPath,
    retryDelayMs: 10,
    maxRetryDelayMs: 50,
  });
  teardown.push(() => bridge.close());
  return bridge;
}

async function grpcServer(path: string): Promise<GrpcServer> {
  const server = await startEchoServer(path);
  teardown.push(() => stopServer(server));
  return server;
}

function client(path: string): Client {
  const c = echoClient(path);
  teardown.push(() => c.close());
  return c;
}

describe('SerialBridge', () => {
  it('carries gRPC calls, and reconnects after the chardev goes away and comes back', async () => {
    const chardev = join(dir, 'agent.channel.0.sock');
    const grpcPath = join(dir, 'guest-grpc.sock');
    const listenPath = join(dir, 'agent.sock');
    const guestServer = await grpcServer(grpcPath);
    const qemu1 = await startFakeQemu(chardev, guestServer);
    const bridge = await startBridge(chardev, listenPath);
    const c = client(listenPath);

    expect(await callEcho(c, 'one')).toBe('echo:one');
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => callEcho(c, `parallel ${i}`)),
    );
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => `echo:parallel ${i}`));

    const disconnected = once(bridge, 'disconnected');
    await qemu1.kill();
    await disconnected;
    expect(bridge.connected).toBe(false);
    // The bridge closed grpc-js's connection; let grpc-js notice before the next call, or that
    // call may race onto the dying connection (a real client would retry UNAVAILABLE).
    await waitFor(() => c.getChannel().getConnectivityState(false) !== connectivityState.READY);

    await startFakeQemu(chardev, guestServer);
    await bridge.waitConnected();
    expect(await callEcho(c, 'two')).toBe('echo:two');
  });

  it('holds a call made while the chardev is down until it comes up', async () => {
    const chardev = join(dir, 'chardev.sock');
    const grpcPath = join(dir, 'guest-grpc.sock');
    const listenPath = join(dir, 'agent.sock');
    const guestServer = await grpcServer(grpcPath);
    await startBridge(chardev, listenPath);
    const c = client(listenPath);
    const call = callEcho(c, 'early');
    await startFakeQemu(chardev, guestServer);
    expect(await call).toBe('echo:early');
  });

  it('close() removes the listening socket; an abort signal closes it too', async () => {
    const chardev = join(dir, 'chardev.sock');
    const b1 = await startBridge(chardev, join(dir, 'a.sock'));
    expect(existsSync(join(dir, 'a.sock'))).toBe(true);
    await b1.close();
    expect(existsSync(join(dir, 'a.sock'))).toBe(false);

    const ac = new AbortController();
    const b2 = await SerialBridge.start({
      chardevPath: chardev,
      listenPath: join(dir, 'b.sock'),
      signal: ac.signal,
    });
    ac.abort();
    await b2.close(); // joins the close the abort started
    expect(existsSync(join(dir, 'b.sock'))).toBe(false);
    await expect(b2.waitConnected(1000)).rejects.toThrow(/bridge closed/);
  });

  it('refuses to replace a listen path that is not a socket', async () => {
    const path = join(dir, 'not-a-socket');
    await writeFile(path, 'x');
    await expect(
      SerialBridge.start({ chardevPath: join(dir, 'c.sock'), listenPath: path }),
    ).rejects.toThrow(/exists and is not a socket/);
  });
});

describe('host bridge ↔ virtio-serial port ↔ guest port loop, end to end', () => {
  /** A chardev whose one client is wired to a FakePort, as QEMU wires it to the guest's port. */
  async function startQemuWithPort(chardevPath: string, port: FakePort) {
    const socks = new Set<Socket>();
    const server = createServer({ allowHalfOpen: true }, (sock) => {
      socks.add(sock);
      port.connectHost(sock);
    });
    server.listen(chardevPath);
    await once(server, 'listening');
    teardown.push(() => {
      port.disconnectHost();
      for (const sock of socks) sock.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    });
  }

  it('a restarted node agent (new bridge) reaches the guest agent again', async () => {
    const chardev = join(dir, 'chardev.sock');
    const grpcPath = join(dir, 'guest-grpc.sock');
    const listenPath = join(dir, 'agent.sock');
    const guestServer = await grpcServer(grpcPath);
    const port = new FakePort();
    await startQemuWithPort(chardev, port);
    const ac = new AbortController();
    const sessions: number[] = [];
    const guest = servePortIo(port, serveStreamsOn(guestServer), ac.signal, {
      eofPollMs: 5,
      onSessionStart: () => sessions.push(sessions.length + 1),
    });
    teardown.push(async () => {
      ac.abort();
      await guest;
    });

    const bridge1 = await startBridge(chardev, listenPath);
    const c1 = client(listenPath);
    expect(await callEcho(c1, 'before restart')).toBe('echo:before restart');
    await bridge1.close();
    c1.close();

    const bridge2 = await startBridge(chardev, listenPath);
    await bridge2.waitConnected();
    const c2 = client(listenPath);
    expect(await callEcho(c2, 'after restart')).toBe('echo:after restart');
    expect(sessions).toEqual([1, 2]);
  });

  it('a new bridge arriving before the guest read EOF (0 ms): the guest finds the new session from its frames', async () => {
    const chardev = join(dir, 'chardev.sock');
    const grpcPath = join(dir, 'guest-grpc.sock');
    const guestServer = await grpcServer(grpcPath);
    const port = new FakePort();
    await startQemuWithPort(chardev, port);
    const ac = new AbortController();
    const boundaries: string[] = [];
    const guest = servePortIo(port, serveStreamsOn(guestServer), ac.signal, {
      eofPollMs: 5,
      onSessionBoundary: (why) => boundaries.push(why),
    });
    teardown.push(async () => {
      ac.abort();
      await guest;
    });

    // Each next host takes the port over before the previous one's disconnect reaches the guest
    // (no EOF between them), and each host leaves a call in flight as it goes, whose answer the
    // guest writes for a host that is gone.
    let bridge = await startBridge(chardev, join(dir, 'agent-1.sock'));
    let c = client(join(dir, 'agent-1.sock'));
    await bridge.waitConnected();
    const eofs = port.eofReads;
    for (let round = 1; round <= 5; round++) {
      expect(await callEcho(c, `round ${round}`)).toBe(`echo:round ${round}`);
      callEcho(c, 'left behind').catch(() => {});
      const next = await startBridge(chardev, join(dir, `agent-${round + 1}.sock`));
      await waitFor(() => port.hostConnected);
      await bridge.close();
      c.close();
      bridge = next;
      c = client(join(dir, `agent-${round + 1}.sock`));
    }
    expect(await callEcho(c, 'last')).toBe('echo:last');
    expect(port.eofReads).toBe(eofs);
    expect(boundaries).toEqual(
      Array.from({ length: 5 }, () => 'SYN for stream 1, which the live session cannot open'),
    );
  });

  it('a bridge throws away what the port held for the previous host, cut frames included', async () => {
    const chardev = join(dir, 'chardev.sock');
    const grpcPath = join(dir, 'guest-grpc.sock');
    const listenPath = join(dir, 'agent.sock');
    const guestServer = await grpcServer(grpcPath);
    // The guest's frames for the previous host's streams 1, 3 and 5 (an answer, FINs, a frame cut
    // in two) reach the new host first, as QEMU and the guest kernel hand them over.
    const frame = (type: number, flags: number, id: number, payload = Buffer.alloc(0)) =>
      Buffer.concat([
        Buffer.from([0, type, 0, flags, 0, 0, 0, id, 0, 0, 0, payload.length]),
        payload,
      ]);
    const stale = Buffer.concat([
      frame(0, 0, 1, Buffer.from('HTTP/2 bytes for the old host')),
      frame(1, 4, 1),
      frame(0, 4, 3),
      frame(1, 8, 5),
      frame(0, 0, 3, Buffer.from('cut in the middle')).subarray(0, 19),
    ]);
    const server = createServer({ allowHalfOpen: true }, (sock) => {
      sock.write(stale);
      new YamuxSession(sock, { role: 'server', onStream: serveStreamsOn(guestServer) });
    });
    server.listen(chardev);
    await once(server, 'listening');
    teardown.push(() => new Promise<void>((r) => server.close(() => r())));
    const opened: Array<{ staleBytes: number }> = [];
    const bridge = await SerialBridge.start({
      chardevPath: chardev,
      listenPath,
      onOpened: (info) => opened.push(info),
    });
    teardown.push(() => bridge.close());
    const c = client(listenPath);
    expect(await callEcho(c, 'clean start')).toBe('echo:clean start');
    // The guest's ACK of the opening's stream 1 comes before the ping's answer: thrown away too.
    expect(opened).toEqual([{ staleBytes: stale.length + 12, openings: 1 }]);
  });
});

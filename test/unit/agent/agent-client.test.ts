// Round trips against a real @grpc/grpc-js server (in process, on a unix socket) that implements
// AgentService and Health: the unit under test is AgentClient, the transport is real.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AgentClient } from '../../../src/agent/agent-client.js';
import { AgentRpcError } from '../../../src/agent/errors.js';
import { buildProcess } from '../../../src/agent/process-spec.js';
import { createSandboxRequest } from '../../../src/agent/agent-requests.js';
import { sharedDirStorage } from '../../../src/agent/storage.js';
import {
  AgentServiceService,
  GuestDetailsResponse,
  Interfaces,
  Routes,
} from '../../../src/generated/agent.js';
import { HealthCheckResponse_ServingStatus, HealthService } from '../../../src/generated/health.js';
import { IPFamily } from '../../../src/generated/types.js';

interface Received {
  rpc: string;
  request: unknown;
}

/** A real gRPC server that answers every RPC plausibly and records what arrived. */
function fakeAgent(
  received: Received[],
  behaviour: { failNext?: { rpc: string; code: status } } = {},
) {
  const handler =
    (rpc: string, reply: (req: never) => unknown = () => ({})) =>
    (call: { request: unknown }, cb: sendUnaryData<unknown>) => {
      received.push({ rpc, request: call.request });
      if (behaviour.failNext?.rpc === rpc) {
        const { code } = behaviour.failNext;
        behaviour.failNext = undefined;
        cb({ code, details: `${rpc} refused by the test` });
        return;
      }
      cb(null, reply(call.request as never));
    };
  const agent: UntypedServiceImplementation = {
    createContainer: handler('CreateContainer'),
    startContainer: handler('StartContainer'),
    removeContainer: handler('RemoveContainer'),
    execProcess: handler('ExecProcess'),
    signalProcess: handler('SignalProcess'),
    waitProcess: handler('WaitProcess', () => ({ status: 137 })),
    writeStdin: handler('WriteStdin', (r: { data: Buffer }) => ({ len: r.data.length })),
    readStdout: handler('ReadStdout', () => ({ data: Buffer.from('out\n') })),
    // The end of a stream, as Kata 1.x's agent (and ours) says it.
    readStderr: (call: { request: unknown }, cb: sendUnaryData<unknown>) => {
      received.push({ rpc: 'ReadStderr', request: call.request });
      cb({ code: status.UNKNOWN, details: 'EOF' });
    },
    closeStdin: handler('CloseStdin'),
    ttyWinResize: handler('TtyWinResize'),
    updateInterface: handler('UpdateInterface', (r: { interface: unknown }) => r.interface),
    updateRoutes: handler('UpdateRoutes', (r: { routes: unknown }) => r.routes),
    listInterfaces: handler('ListInterfaces', () =>
      Interfaces.fromPartial({ Interfaces: [{ name: 'eth0', mtu: 1500 }] }),
    ),
    listRoutes: handler('ListRoutes', () =>
      Routes.fromPartial({ Routes: [{ dest: '', gateway: '10.0.0.1', device: 'eth0' }] }),
    ),
    createSandbox: handler('CreateSandbox'),
    destroySandbox: handler('DestroySandbox'),
    getGuestDetails: handler('GetGuestDetails', () =>
      GuestDetailsResponse.fromPartial({ agentDetails: { version: '9.9.9' } }),
    ),
  };
  const health: UntypedServiceImplementation = {
    check: handler('Check', () => ({ status: HealthCheckResponse_ServingStatus.SERVING })),
    version: handler('Version', () => ({ grpcVersion: 'grpc-js', agentVersion: '9.9.9' })),
  };
  const server = new Server();
  server.addService(AgentServiceService, agent);
  server.addService(HealthService, health);
  return server;
}

function listen(server: Server, socket: string): Promise<void> {
  return new Promise((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
}

const stop = (server: Server): Promise<void> =>
  new Promise((resolve) => server.tryShutdown(() => resolve()));

describe('AgentClient against a real gRPC server', () => {
  let dir: string;
  let socket: string;
  const received: Received[] = [];
  const behaviour: { failNext?: { rpc: string; code: status } } = {};
  let server: Server;
  let client: AgentClient;
  const calls: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'agent-client-'));
    socket = path.join(dir, 'agent.sock');
    server = fakeAgent(received, behaviour);
    await listen(server, socket);
    client = new AgentClient({
      socketPath: socket,
      maxTimeoutMs: 5_000,
      onCall: (rpc, code) => calls.push(`${rpc}:${code}`),
    });
  });

  afterAll(async () => {
    client.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  afterEach(() => {
    received.length = 0;
  });

  const last = (): Received => received[received.length - 1]!;

  it('Check and Version go to the health service', async () => {
    await expect(client.check()).resolves.toBe(true);
    expect(last()).toEqual({ rpc: 'Check', request: { service: '' } });
    await expect(client.version()).resolves.toEqual({
      grpcVersion: 'grpc-js',
      agentVersion: '9.9.9',
    });
    expect(calls).toContain('Check:0');
  });

  it('CreateSandbox carries hostname, dns, the share and the sandbox id', async () => {
    const setup = {
      sandboxId: 'uid-1',
      hostname: 'web',
      dns: { nameservers: ['10.0.0.10'], searches: [] },
      storages: [sharedDirStorage()],
    };
    await client.createSandbox(setup);
    expect(last()).toEqual({ rpc: 'CreateSandbox', request: createSandboxRequest(setup) });
    await client.destroySandbox();
    expect(last().rpc).toBe('DestroySandbox');
  });

  it('container lifecycle RPCs arrive with their ids', async () => {
    const { process, stringUser } = buildProcess({ args: ['sh'], env: [], cwd: '/', user: '1:2' });
    await client.createContainer({
      containerId: 'main',
      stringUser,
      oci: { Version: '1.1.0', Process: process, Hostname: 'web', Mounts: [], Annotations: {} },
    });
    expect(last().rpc).toBe('CreateContainer');
    expect(last().request).toMatchObject({
      containerId: 'main',
      OCI: { Process: { User: { UID: 1, GID: 2 } } },
    });
    // The fields the host never varies are the client's: init's exec id is the container's.
    expect(last().request).toMatchObject({
      execId: 'main',
      devices: [],
      storages: [],
      sandboxPidns: false,
      agentPidns: false,
    });
    await client.startContainer('main');
    expect(last()).toEqual({ rpc: 'StartContainer', request: { containerId: 'main' } });
    await expect(client.waitProcess('main', 'main')).resolves.toBe(137);
    expect(last()).toEqual({
      rpc: 'WaitProcess',
      request: { containerId: 'main', execId: 'main' },
    });
    await client.signalProcess('main', '', 15);
    expect(last()).toEqual({
      rpc: 'SignalProcess',
      request: { containerId: 'main', execId: '', signal: 15 },
    });
    await client.removeContainer('main', 5);
    expect(last()).toEqual({
      rpc: 'RemoveContainer',
      request: { containerId: 'main', timeout: 5 },
    });
  });

  it('exec gets a fresh exec id each time; stdio calls carry it', async () => {
    const { process } = buildProcess({ args: ['cat'], env: [], cwd: '/' });
    const a = await client.execProcess('main', process, undefined);
    const b = await client.execProcess('main', process, undefined);
    expect(a).not.toBe(b);
    expect(a).toMatch(/^[0-9a-f-]{36}$/);
    expect(last().request).toMatchObject({
      containerId: 'main',
      execId: b,
      process: { Args: ['cat'] },
    });
    await expect(client.writeStdin('main', a, Buffer.from('abc'))).resolves.toBe(3);
    expect(last().request).toEqual({ containerId: 'main', execId: a, data: Buffer.from('abc') });
    await expect(client.readStdout('main', a, 1024)).resolves.toEqual(Buffer.from('out\n'));
    expect(last().request).toEqual({ containerId: 'main', execId: a, len: 1024 });
    await expect(client.readStderr('main', a, 1024)).resolves.toEqual(Buffer.alloc(0));
    // Any other failure of a read is a failure, not the end.
    behaviour.failNext = { rpc: 'ReadStdout', code: status.UNKNOWN };
    await expect(client.readStdout('main', a, 1024)).rejects.toMatchObject({
      rpc: 'ReadStdout',
      code: status.UNKNOWN,
    });
    await client.closeStdin('main', a);
    expect(last()).toEqual({ rpc: 'CloseStdin', request: { containerId: 'main', execId: a } });
    await client.ttyWinResize('main', a, 24, 80);
    expect(last()).toEqual({
      rpc: 'TtyWinResize',
      request: { containerId: 'main', execId: a, row: 24, column: 80 },
    });
  });

  it('network RPCs round-trip interfaces and routes', async () => {
    const iface = {
      device: 'eth0',
      name: 'eth0',
      IPAddresses: [{ family: IPFamily.v4, address: '10.0.0.2', mask: '24' }],
      mtu: 1500,
      hwAddr: '02:00:00:00:00:01',
      pciPath: '',
      type: 'veth',
      rawFlags: 0,
    };
    await expect(client.updateInterface(iface)).resolves.toEqual(iface);
    const route = {
      dest: '',
      gateway: '10.0.0.1',
      device: 'eth0',
      source: '',
      scope: 0,
      family: IPFamily.v4,
      flags: 0,
      mtu: 0,
    };
    await expect(client.updateRoutes([route])).resolves.toEqual([route]);
    expect(last()).toEqual({ rpc: 'UpdateRoutes', request: { routes: { Routes: [route] } } });
    await expect(client.listInterfaces()).resolves.toEqual([
      expect.objectContaining({ name: 'eth0', mtu: 1500 }),
    ]);
    await expect(client.listRoutes()).resolves.toEqual([
      expect.objectContaining({ gateway: '10.0.0.1' }),
    ]);
    await expect(client.guestDetails()).resolves.toMatchObject({
      agentDetails: { version: '9.9.9' },
    });
  });

  it('an error carries the RPC name and the gRPC status', async () => {
    behaviour.failNext = { rpc: 'StartContainer', code: status.NOT_FOUND };
    const err = await client.startContainer('ghost').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentRpcError);
    expect(err).toMatchObject({ rpc: 'StartContainer', code: status.NOT_FOUND });
    expect(String(err)).toMatch(
      /agent StartContainer failed: NOT_FOUND: StartContainer refused by the test/,
    );
  });

  it('does not retry a call that is unsafe to repeat', async () => {
    behaviour.failNext = { rpc: 'CreateSandbox', code: status.UNAVAILABLE };
    const req = {
      sandboxId: 'x',
      hostname: 'h',
      dns: { nameservers: [], searches: [] },
      storages: [],
    };
    await expect(client.createSandbox(req)).rejects.toMatchObject({ code: status.UNAVAILABLE });
    expect(received.filter((r) => r.rpc === 'CreateSandbox')).toHaveLength(1);
  });

  it('retries a safe call while the agent is unavailable', async () => {
    behaviour.failNext = { rpc: 'ListRoutes', code: status.UNAVAILABLE };
    await expect(client.listRoutes()).resolves.toHaveLength(1);
    expect(received.filter((r) => r.rpc === 'ListRoutes')).toHaveLength(2);
  });

  it('a cancelled call ends with CANCELLED', async () => {
    const ac = new AbortController();
    ac.abort(new Error('sandbox deleted'));
    await expect(client.check({ signal: ac.signal })).rejects.toMatchObject({
      code: status.CANCELLED,
    });
  });
});

describe('AgentClient when the agent is down or restarts', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'agent-client-down-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives a clear error within the deadline when nothing listens', async () => {
    const client = new AgentClient({ socketPath: path.join(dir, 'nobody.sock') });
    // Without the deadline the call would wait for a listener forever (past the test's timeout).
    const err = await client.check({ timeoutMs: 1_500 }).catch((e: unknown) => e);
    client.close();
    expect(err).toBeInstanceOf(AgentRpcError);
    expect((err as AgentRpcError).rpc).toBe('Check');
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain((err as AgentRpcError).code);
  });

  it('waitForReady holds a call until the agent comes up', async () => {
    const socket = path.join(dir, 'late.sock');
    const client = new AgentClient({ socketPath: socket });
    const pending = client.check({ waitForReady: true, timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 300));
    const server = fakeAgent([]);
    await listen(server, socket);
    await expect(pending).resolves.toBe(true);
    client.close();
    await stop(server);
  });

  it('survives the server going away and coming back on the same socket', async () => {
    const socket = path.join(dir, 'restart.sock');
    const first = fakeAgent([]);
    await listen(first, socket);
    const client = new AgentClient({ socketPath: socket });
    await expect(client.check()).resolves.toBe(true);

    first.forceShutdown();
    await expect(client.guestDetails({ timeoutMs: 500 })).rejects.toBeInstanceOf(AgentRpcError);

    const received: Received[] = [];
    const second = fakeAgent(received);
    rmSync(socket, { force: true });
    await listen(second, socket);
    await expect(client.check({ timeoutMs: 10_000 })).resolves.toBe(true);
    expect(received.map((r) => r.rpc)).toContain('Check');
    client.close();
    await stop(second);
  });
});

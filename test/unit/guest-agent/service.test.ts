// The guest agent's gRPC service in process on a unix socket, driven by the real AgentClient.
// crun is replaced by fake-crun.mjs (plain children, same argv), mount/umount/ip are recorded.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import type { ValidateFunction } from 'ajv';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../../../src/agent/agent-client.js';
import { AgentRpcError } from '../../../src/agent/errors.js';
import { startAgentServer, type AgentServer } from '../../../src/agent/guest/server.js';
import { sharedDirStorage } from '../../../src/agent/storage.js';
import { createContainerRequest, type ContainerSetup } from '../../../src/agent/agent-requests.js';
import { runCommandOk, type CommandRunner } from '../../../src/common/run-command.js';
import { AgentServiceClient } from '../../../src/generated/agent.js';
import { Process, Spec } from '../../../src/generated/oci.js';
import { createLogger } from '../../../src/observability/logger.js';
import { configValidator } from './oci-schema.js';
import { ran } from './ran.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FAKE_CRUN = path.join(HERE, 'fake-crun.mjs');
const FAKE_TTY_RELAY = path.join(HERE, 'fake-tty-relay.mjs');
const ROOT = (cid: string): string => `/run/kata-containers/shared/containers/${cid}/rootfs`;

let dir: string;
let agent: AgentServer;
let client: AgentClient;
let validate: ValidateFunction;
const recorded: string[][] = [];

const recordingRunner: CommandRunner = async (argv, opts) => {
  const [file] = argv;
  if (file === 'mount' || file === 'umount' || file === 'ip') {
    recorded.push([...argv]);
    return ran(argv, file === 'ip' ? '[]' : '');
  }
  return runCommandOk(argv, opts);
};

function containerRequest(cid: string, args: string[], extra: object = {}): ContainerSetup {
  return {
    containerId: cid,
    oci: Spec.fromPartial({
      Root: { Path: ROOT(cid) },
      Process: { Args: args, Env: ['PATH=/usr/bin:/bin'], Cwd: '/' },
      Mounts: [{ destination: '/proc', type: 'proc', source: 'proc', options: [] }],
    }),
    ...extra,
  };
}

async function rpcError(p: Promise<unknown>): Promise<AgentRpcError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AgentRpcError) return err;
    throw err;
  }
  throw new Error('expected the RPC to fail');
}

async function readAll(read: (len: number) => Promise<Buffer>, len = 1024): Promise<string> {
  let out = '';
  for (;;) {
    const b = await read(len);
    if (b.length === 0) return out;
    out += b.toString();
  }
}

beforeAll(async () => {
  validate = configValidator();
  dir = mkdtempSync(path.join(tmpdir(), 'guest-agent-'));
  writeFileSync(path.join(dir, 'block_size_bytes'), '8000000\n');
  writeFileSync(path.join(dir, 'meminfo'), 'MemTotal: 1000 kB\nMemAvailable: 600 kB\n');
  mkdirSync(path.join(dir, 'proc', 'net'), { recursive: true });
  writeFileSync(path.join(dir, 'proc', 'meminfo'), 'MemTotal: 1000 kB\nMemAvailable: 600 kB\n');
  writeFileSync(
    path.join(dir, 'proc', 'net', 'dev'),
    'h1\nh2\n  eth0: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0\n',
  );
  agent = await startAgentServer({
    socketPath: path.join(dir, 'agent.sock'),
    logger: createLogger('guest-agent-test'),
    bundleRoot: path.join(dir, 'bundles'),
    hostnameFile: path.join(dir, 'hostname'),
    resolvConf: path.join(dir, 'resolv.conf'),
    containerResolvConf: path.join(dir, 'container-resolv.conf'),
    sysBlockDir: path.join(dir, 'sys-block'),
    memoryBlockSizeFile: path.join(dir, 'block_size_bytes'),
    meminfoFile: path.join(dir, 'meminfo'),
    procRoot: path.join(dir, 'proc'),
    cgroupRoot: path.join(dir, 'cgroup'),
    crunBin: FAKE_CRUN,
    crunGlobalArgs: ['--root', path.join(dir, 'crun')],
    ttyRelayBin: FAKE_TTY_RELAY,
    consoleDir: path.join(dir, 'tty'),
    makeDir: async () => {},
    run: recordingRunner,
  });
  client = new AgentClient({ socketPath: agent.socketPath, maxTimeoutMs: 10_000 });
});

afterAll(async () => {
  client?.close();
  await agent?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('health and details', () => {
  it('Check is SERVING and Version names the agent', async () => {
    expect(await client.check()).toBe(true);
    expect(await client.version()).toEqual({ grpcVersion: 'grpc-js', agentVersion: '0.1.0' });
  });

  it('GetGuestDetails reports the memory block size and handlers', async () => {
    const d = await client.guestDetails();
    expect(d.memBlockSizeBytes).toBe(0x8000000);
    expect(d.agentDetails).toMatchObject({
      version: '0.1.0',
      initDaemon: false,
      storageHandlers: ['9p', 'blk', 'local', 'ephemeral'],
      deviceHandlers: ['blk'],
    });
    expect(d.guestMemory).toEqual({ totalBytes: 1000 * 1024, availableBytes: 600 * 1024 });
  });
});

describe('refusals', () => {
  it('CreateSandbox refuses a mount point of ../../etc with INVALID_ARGUMENT naming the field', async () => {
    const err = await rpcError(
      client.createSandbox({
        hostname: 'h',
        dns: { nameservers: [], searches: [] },
        storages: [{ ...sharedDirStorage(), mountPoint: '../../etc' }],
        sandboxId: 'sb',
      }),
    );
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toBe('storages[0].mount_point "../../etc" escapes /run/kata-containers/');
    expect(recorded.filter((c) => c[0] === 'mount')).toEqual([]);
  });

  it.each<[string, Partial<ContainerSetup> | ((r: ContainerSetup) => void), RegExp]>([
    [
      'a storage escaping the agent dir',
      { storages: [{ ...sharedDirStorage(), mountPoint: '/run/kata-containers/../../etc' }] },
      /^storages\[0\]\.mount_point /,
    ],
    ['a bad container id', { containerId: '../c' }, /^container_id "\.\.\/c"/],
    ['a root path outside', (r) => (r.oci.Root!.Path = '/etc'), /^OCI\.root\.path "\/etc" escapes/],
    [
      'a bind mount from outside',
      (r) => r.oci.Mounts.push({ destination: '/x', type: 'bind', source: '/', options: [] }),
      /^OCI\.mounts\[1\]\.source "\/" escapes/,
    ],
    [
      'a device path outside /dev/',
      {
        devices: [
          { id: 'd1', type: 'blk', vmPath: '/etc/passwd', containerPath: '/dev/x', options: [] },
        ],
      },
      /^devices\[0\]\.vm_path /,
    ],
  ])('CreateContainer refuses %s with INVALID_ARGUMENT', async (_n, change, message) => {
    const req = containerRequest('bad', ['true']);
    if (typeof change === 'function') change(req);
    else Object.assign(req, change);
    const err = await rpcError(client.createContainer(req));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toMatch(message);
  });

  it("CreateContainer refuses Kata 1.x's agent_pidns (field 8) instead of ignoring it", async () => {
    const raw = new AgentServiceClient(`unix://${agent.socketPath}`, credentials.createInsecure());
    const req = createContainerRequest(containerRequest('pidns', ['true']));
    const err = await new Promise<ServiceError | null>((resolve) =>
      raw.createContainer({ ...req, agentPidns: true }, (e) => resolve(e)),
    );
    raw.close();
    expect(err).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: "agent_pidns: sharing the agent's pid namespace is not supported",
    });
  });

  it('unknown container ids are NOT_FOUND, naming the id', async () => {
    for (const p of [
      client.startContainer('nope'),
      client.waitProcess('nope', ''),
      client.readStdout('nope', 'nope', 10),
      client.signalProcess('nope', '', 9),
      client.removeContainer('nope', 1),
      client.closeStdin('nope', 'x'),
      client.statsContainer('nope'),
    ]) {
      const err = await rpcError(p);
      expect(err.code).toBe(status.NOT_FOUND);
      expect(err.details).toContain('"nope"');
    }
  });
});

describe('containers', () => {
  it('creates a container whose config.json validates; a duplicate id is ALREADY_EXISTS', async () => {
    await client.createContainer(containerRequest('c1', ['sh', '-c', 'echo hello; exit 3']));
    const config: unknown = JSON.parse(
      readFileSync(path.join(dir, 'bundles', 'c1', 'config.json'), 'utf8'),
    );
    if (!validate(config)) throw new Error(JSON.stringify(validate.errors));
    expect(config).toMatchObject({
      root: { path: ROOT('c1') },
      process: { args: ['sh', '-c', 'echo hello; exit 3'] },
    });

    const dup = await rpcError(client.createContainer(containerRequest('c1', ['true'])));
    expect(dup.code).toBe(status.ALREADY_EXISTS);
    expect(dup.details).toBe('container_id "c1" already exists');

    const unknownExec = await rpcError(client.waitProcess('c1', 'e-unknown'));
    expect(unknownExec.code).toBe(status.NOT_FOUND);
    expect(unknownExec.details).toContain('"e-unknown"');
  });

  it('runs it: stdout, then the end of the stream as Kata 1.x says it, exit status (twice)', async () => {
    await client.startContainer('c1');
    expect(await readAll((n) => client.readStdout('c1', 'c1', n), 3)).toBe('hello\n');
    expect((await client.readStdout('c1', 'c1', 10)).length).toBe(0);
    // On the wire: the read fails with Unknown "EOF", every time after the end.
    const raw = new AgentServiceClient(`unix://${agent.socketPath}`, credentials.createInsecure());
    for (const read of [
      raw.readStdout.bind(raw),
      raw.readStdout.bind(raw),
      raw.readStderr.bind(raw),
    ]) {
      const err = await new Promise<ServiceError | null>((resolve) =>
        read({ containerId: 'c1', execId: 'c1', len: 10 }, (e) => resolve(e)),
      );
      expect(err).toMatchObject({ code: status.UNKNOWN, details: 'EOF' });
    }
    raw.close();
    expect(await client.waitProcess('c1', 'c1')).toBe(3);
    expect(await client.waitProcess('c1', '')).toBe(3);
    const again = await rpcError(client.startContainer('c1'));
    expect(again.code).toBe(status.FAILED_PRECONDITION);
  });

  it('exec into a running container: stdin round-trips through cat; signals reach init and execs', async () => {
    await client.createContainer(
      containerRequest('c2', [
        'sh',
        '-c',
        'trap "exit 42" TERM; echo up; while :; do sleep 0.05; done',
      ]),
    );
    const notRunning = await rpcError(
      client.execProcess('c2', Process.fromPartial({ Args: ['true'] }), undefined),
    );
    expect(notRunning.code).toBe(status.FAILED_PRECONDITION);
    await client.startContainer('c2');
    expect((await client.readStdout('c2', 'c2', 100)).toString()).toBe('up\n');

    const cat = await client.execProcess('c2', Process.fromPartial({ Args: ['cat'] }), undefined);
    expect(await client.writeStdin('c2', cat, Buffer.from('ping\n'))).toBe(5);
    expect((await client.readStdout('c2', cat, 100)).toString()).toBe('ping\n');
    await client.closeStdin('c2', cat);
    expect(await client.waitProcess('c2', cat)).toBe(0);
    expect((await client.readStdout('c2', cat, 100)).length).toBe(0);

    const sleeper = await client.execProcess(
      'c2',
      Process.fromPartial({ Args: ['sleep', '1000'] }),
      undefined,
    );
    await new Promise((r) => setTimeout(r, 300));
    await client.signalProcess('c2', sleeper, 9);
    expect(await client.waitProcess('c2', sleeper)).toBe(137);

    const resize = await rpcError(client.ttyWinResize('c2', 'c2', 24, 80));
    expect(resize.code).toBe(status.FAILED_PRECONDITION);
    expect(resize.details).toMatch(/has no terminal/);

    await client.signalProcess('c2', 'c2', 15);
    expect(await client.waitProcess('c2', 'c2')).toBe(42);
  });

  it('terminal processes run under the terminal relay: one output, sizes through its channel, CloseStdin its end of input', async () => {
    const crunCalls = (): string[][] =>
      readFileSync(path.join(dir, 'crun', 'calls.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as string[]);
    const req = containerRequest('t1', ['sh', '-c', 'echo out; echo err >&2; read x; exit 4']);
    req.oci.Process!.Terminal = true;
    await client.createContainer(req);
    await client.startContainer('t1');
    const run = crunCalls().find((c) => c[0] === 'run' && c.at(-1) === 't1')!;
    const socket = run[run.indexOf('--console-socket') + 1]!;
    expect(path.dirname(socket)).toBe(path.join(dir, 'tty'));
    // stderr joins stdout on a terminal; ReadStderr ends at once, as Kata's does for a terminal.
    expect((await client.readStderr('t1', 't1', 100)).length).toBe(0);
    await client.ttyWinResize('t1', 't1', 40, 120);
    expect(readFileSync(`${socket}.sizes`, 'utf8')).toBe('40 120\n');
    await client.writeStdin('t1', 't1', Buffer.from('go\n'));
    expect(await readAll((n) => client.readStdout('t1', 't1', n))).toMatch(
      /out\n[^]*err\n|err\n[^]*out\n/,
    );
    expect(await client.waitProcess('t1', 't1')).toBe(4);
    const gone = await rpcError(client.ttyWinResize('t1', 't1', 24, 80));
    expect(gone.code).toBe(status.FAILED_PRECONDITION);

    await client.createContainer(containerRequest('t2', ['sleep', '1000']));
    await client.startContainer('t2');
    const cat = await client.execProcess(
      't2',
      Process.fromPartial({ Args: ['cat'], Terminal: true }),
      undefined,
    );
    const tooTall = await rpcError(client.ttyWinResize('t2', cat, 70_000, 80));
    expect(tooTall.code).toBe(status.INVALID_ARGUMENT);
    expect(tooTall.details).toMatch(/^row 70000 /);
    await client.ttyWinResize('t2', cat, 24, 80);
    await client.writeStdin('t2', cat, Buffer.from('ping\n'));
    await client.closeStdin('t2', cat);
    expect(await readAll((n) => client.readStdout('t2', cat, n))).toBe('ping\n');
    expect(await client.waitProcess('t2', cat)).toBe(0);
    const exec = crunCalls().find((c) => c[0] === 'exec' && c.includes('--console-socket'));
    expect(exec).toBeDefined();
    await client.removeContainer('t2', 1);
    await client.removeContainer('t1', 1);
  });

  it('SIGKILL to every process of a container ends it with 137', async () => {
    await client.createContainer(containerRequest('c3', ['sleep', '1000']));
    await client.startContainer('c3');
    await new Promise((r) => setTimeout(r, 300));
    await client.signalProcess('c3', '', 9);
    expect(await client.waitProcess('c3', 'c3')).toBe(137);
  });

  it('RemoveContainer kills what is left, deletes it and removes its bundle', async () => {
    await client.createContainer(containerRequest('c4', ['sleep', '1000']));
    await client.startContainer('c4');
    await new Promise((r) => setTimeout(r, 300));
    await client.removeContainer('c4', 1);
    expect(existsSync(path.join(dir, 'bundles', 'c4'))).toBe(false);
    const calls = readFileSync(path.join(dir, 'crun', 'calls.log'), 'utf8');
    expect(calls).toContain('["kill","--all","c4","KILL"]');
    expect(calls).toContain('["delete","-f","c4"]');
    expect((await rpcError(client.waitProcess('c4', ''))).code).toBe(status.NOT_FOUND);
  });

  it("StatsContainer reads the cgroup of the container's init; not running is FAILED_PRECONDITION", async () => {
    await client.createContainer(containerRequest('c6', ['sleep', '1000']));
    const early = await rpcError(client.statsContainer('c6'));
    expect([early.code, early.details]).toEqual([
      status.FAILED_PRECONDITION,
      'container "c6" is not running',
    ]);
    await client.startContainer('c6');
    // The fake crun's child stands in for the container's init; its cgroup is a fixture.
    const pid = readFileSync(path.join(dir, 'bundles', 'c6', 'init.pid'), 'utf8').trim();
    mkdirSync(path.join(dir, 'proc', pid), { recursive: true });
    writeFileSync(path.join(dir, 'proc', pid, 'cgroup'), '0::/c6\n');
    mkdirSync(path.join(dir, 'cgroup', 'c6'), { recursive: true });
    writeFileSync(path.join(dir, 'cgroup', 'c6', 'cpu.stat'), 'usage_usec 2500\n');
    writeFileSync(path.join(dir, 'cgroup', 'c6', 'pids.current'), '1\n');
    const res = await client.statsContainer('c6');
    expect(res.cgroupStats?.cpuStats?.cpuUsage?.totalUsage).toBe(2_500_000);
    expect(res.cgroupStats?.pidsStats?.current).toBe(1);
    expect(res.networkStats).toMatchObject([{ name: 'eth0', rxBytes: 10, txBytes: 20 }]);
    await client.removeContainer('c6', 1);
  });

  it('a created but never started container can be removed; its waiters are released', async () => {
    await client.createContainer(containerRequest('c5', ['true']));
    const waiting = rpcError(client.waitProcess('c5', 'c5'));
    await new Promise((r) => setTimeout(r, 100));
    await client.removeContainer('c5', 1);
    expect((await waiting).code).toBe(status.FAILED_PRECONDITION);
  });
});

describe('sandbox', () => {
  it('CreateSandbox sets hostname and DNS and mounts the share; a second is ALREADY_EXISTS; Destroy undoes it all', async () => {
    recorded.length = 0;
    const req = {
      hostname: 'pod-a',
      dns: { nameservers: ['10.0.0.10'], searches: ['default.svc'] },
      storages: [sharedDirStorage()],
      sandboxId: 'sb1',
    };
    await client.createSandbox(req);
    expect(readFileSync(path.join(dir, 'hostname'), 'utf8')).toBe('pod-a');
    expect(readFileSync(path.join(dir, 'resolv.conf'), 'utf8')).toBe(
      'nameserver 10.0.0.10\nsearch default.svc\n',
    );
    expect(recorded).toEqual([
      [
        'mount',
        '-t',
        '9p',
        '-o',
        'trans=virtio,version=9p2000.L,nodev',
        'kataShared',
        '/run/kata-containers/shared/containers/',
      ],
    ]);
    expect((await rpcError(client.createSandbox(req))).code).toBe(status.ALREADY_EXISTS);

    await client.createContainer(containerRequest('c6', ['sleep', '1000']));
    await client.startContainer('c6');
    await client.destroySandbox();
    expect(recorded).toContainEqual(['umount', '/run/kata-containers/shared/containers/']);
    expect((await rpcError(client.waitProcess('c6', ''))).code).toBe(status.NOT_FOUND);
    expect((await rpcError(client.waitProcess('c1', ''))).code).toBe(status.NOT_FOUND);
  });
});

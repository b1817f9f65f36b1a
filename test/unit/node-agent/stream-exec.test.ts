// The node agent's exec and attach streams, from a WebSocket client (v5.channel.k8s.io) to an
// agent whose processes are this machine's (LocalProcessAgent: the guest agent's process table).
// The TokenReview is faked; the stream path, the protocol and the processes are real.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { StreamServer } from '../../../src/node-agent/stream/stream-server.js';
import { selfSignedCertificate } from '../../../src/observability/self-signed-cert.js';
import { createLogger } from '../../../src/observability/logger.js';
import { buildProcess } from '../../../src/agent/process-spec.js';
import { OutputTap } from '../../../src/node-agent/runtime/output-tap.js';
import { CHANNEL, exitCodeOf, frame } from '../../../src/subresources/stream-protocol.js';
import { LocalProcessAgent } from '../../fixtures/local-process-agent.js';

async function eventually<T>(
  what: string,
  f: () => Promise<T | undefined>,
  ms: number,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const cert = selfSignedCertificate({ commonName: 'node', hosts: ['127.0.0.1'] });
const agent = new LocalProcessAgent();
const tap = new OutputTap();
let server: StreamServer;
let base: string;
const work = mkdtempSync(path.join(tmpdir(), 'stream-exec-'));
const consoleFile = path.join(work, 'console.log');
const consoleSocket = path.join(work, 'console.sock');
let ended = false;

beforeAll(async () => {
  server = new StreamServer({
    port: 0,
    host: '127.0.0.1',
    cert: cert.certPem,
    key: cert.keyPem,
    reviewToken: async (token) =>
      token === 'kata-api' ? { username: 'system:serviceaccount:kata-system:kata-api' } : undefined,
    sandbox: (namespace, name) =>
      namespace === 'ns' && name === 'sb'
        ? {
            logDir: '/nonexistent',
            containerNames: ['main'],
            container: () => ({ created: true, started: true, state: 'Running', restartCount: 0 }),
            ended: () => ended,
            consoleFile,
            consoleSocket,
            agent: () => agent,
            execProcess: (_c, command, tty) =>
              buildProcess({
                args: command,
                env: [{ name: 'PATH', value: process.env['PATH'] ?? '/usr/bin:/bin' }],
                cwd: '/',
                terminal: tty,
              }),
            output: () => tap,
          }
        : undefined,
    allowedUsername: 'system:serviceaccount:kata-system:kata-api',
    logger: createLogger('test', 'warn'),
  });
  base = `wss://127.0.0.1:${await server.start()}/v1/namespaces/ns/katasandboxes/sb`;
});

afterAll(async () => {
  await server.close();
  rmSync(work, { recursive: true, force: true });
});

interface Result {
  stdout: Buffer;
  stderr: Buffer;
  status?: unknown;
}

function open(sub: string, query: string, token = 'kata-api'): WebSocket {
  return new WebSocket(`${base}/${sub}?${query}`, ['v5.channel.k8s.io'], {
    ca: cert.certPem,
    headers: { Authorization: `Bearer ${token}` },
  });
}

function collect(ws: WebSocket): Promise<Result> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let status: unknown;
  ws.on('message', (m: Buffer) => {
    if (m[0] === CHANNEL.stdout) out.push(m.subarray(1));
    else if (m[0] === CHANNEL.stderr) err.push(m.subarray(1));
    else if (m[0] === CHANNEL.error) status = JSON.parse(m.subarray(1).toString());
  });
  return new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('close', () =>
      resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err), status }),
    );
  });
}

const cmd = (...args: string[]) => args.map((a) => `command=${encodeURIComponent(a)}`).join('&');

describe('exec over the stream endpoint', () => {
  it('carries stdout and stderr and ends with the exit code as kubelet reports it', async () => {
    const r = await collect(
      open('exec', `${cmd('sh', '-c', 'echo $((6*7)); echo oops >&2; exit 3')}&stdout=1&stderr=1`),
    );
    expect(r.stdout.toString()).toBe('42\n');
    expect(r.stderr.toString()).toBe('oops\n');
    expect(exitCodeOf(r.status)).toEqual({ code: 3 });
  });

  it('keeps what the client sends while ExecProcess is still starting the process (a slow guest)', async () => {
    agent.execDelayMs = 500;
    try {
      const ws = open('exec', `${cmd('wc', '-c')}&stdin=1&stdout=1`);
      const done = collect(ws);
      await new Promise((resolve) => ws.once('open', resolve));
      ws.send(frame(CHANNEL.stdin, Buffer.alloc(200_000, 0x61)));
      ws.send(frame(CHANNEL.close, Buffer.from([CHANNEL.stdin])));
      const r = await done;
      expect(r.stdout.toString().trim()).toBe('200000');
      expect(exitCodeOf(r.status)).toEqual({ code: 0 });
    } finally {
      agent.execDelayMs = 0;
    }
  });

  it('streams 10 MiB of stdin through sha256sum; the stdin EOF is the close channel', async () => {
    const data = Buffer.alloc(10 << 20);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    const ws = open('exec', `${cmd('sha256sum')}&stdin=1&stdout=1&stderr=1`);
    const done = collect(ws);
    await new Promise((resolve) => ws.once('open', resolve));
    for (let off = 0; off < data.length; off += 32 * 1024) {
      ws.send(frame(CHANNEL.stdin, data.subarray(off, off + 32 * 1024)));
    }
    ws.send(frame(CHANNEL.close, Buffer.from([CHANNEL.stdin])));
    const r = await done;
    expect(r.stdout.toString().split(' ')[0]).toBe(createHash('sha256').update(data).digest('hex'));
    expect(exitCodeOf(r.status)).toEqual({ code: 0 });
  });

  it('a client that goes away mid-stream leaves no process and no open stream', async () => {
    const ws = open('exec', `${cmd('sh', '-c', 'echo started; exec sleep 1000')}&stdin=1&stdout=1`);
    let out = '';
    ws.on('message', (m: Buffer) => (out += m.subarray(1).toString()));
    await eventually('started', async () => (out.includes('started') ? true : undefined), 10_000);
    expect(server.openStreams).toBe(1);
    expect(agent.running().length).toBe(1);
    ws.terminate();
    await eventually(
      'no process, no stream',
      async () => (agent.running().length === 0 && server.openStreams === 0 ? true : undefined),
      10_000,
    );
  });

  it('refuses before the upgrade: another identity, a bad option, an unknown sandbox', async () => {
    const refusal = (ws: WebSocket) =>
      new Promise<number>((resolve) =>
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)),
      );
    expect(await refusal(open('exec', `${cmd('ls')}&stdout=1`, 'someone'))).toBe(403);
    expect(await refusal(open('exec', 'stdout=1'))).toBe(400);
    expect(await refusal(open('exec', `${cmd('ls')}&stdout=1&container=other`))).toBe(400);
    const far = new WebSocket(
      `${base.replace('/sb', '/elsewhere')}/exec?${cmd('ls')}&stdout=1`,
      ['v5.channel.k8s.io'],
      { ca: cert.certPem, headers: { Authorization: 'Bearer kata-api' } },
    );
    expect(await refusal(far)).toBe(404);
  });
});

describe('attach over the stream endpoint', () => {
  it("gets the container's output as the log pump writes it, until the run ends", async () => {
    const ws = open('attach', 'stdout=1&stderr=1');
    const done = collect(ws);
    await new Promise((resolve) => ws.once('open', resolve));
    await eventually('attached', async () => (tap.listening === 1 ? true : undefined), 10_000);
    await tap.publish('stdout', Buffer.from('out\n'));
    await tap.publish('stderr', Buffer.from('err\n'));
    tap.end();
    const r = await done;
    expect(r.stdout.toString()).toBe('out\n');
    expect(r.stderr.toString()).toBe('err\n');
    expect(server.openStreams).toBe(0);
  });
});

describe('the console over the stream endpoint', () => {
  it("follows the console log and writes input to QEMU's console socket; ends with the sandbox", async () => {
    writeFileSync(consoleFile, 'boot line 1\nboot line 2\n');
    let typed = '';
    const qemu = createServer((c) => c.on('data', (d: Buffer) => (typed += d.toString())));
    await new Promise<void>((resolve) => qemu.listen(consoleSocket, resolve));
    try {
      const ws = open('console', 'stdin=true&tailLines=1');
      const done = collect(ws);
      let out = '';
      ws.on('message', (m: Buffer) => {
        if (m[0] === CHANNEL.stdout) out += m.subarray(1).toString();
      });
      await eventually(
        'the tail',
        async () => (out === 'boot line 2\n' ? true : undefined),
        10_000,
      );
      ws.send(frame(CHANNEL.stdin, 'ls\r'));
      await eventually(
        'input at the socket',
        async () => (typed === 'ls\r' ? true : undefined),
        10_000,
      );
      appendFileSync(consoleFile, 'after\n');
      await eventually(
        'followed',
        async () => (out.endsWith('after\n') ? true : undefined),
        10_000,
      );
      ended = true;
      const r = await done;
      expect(exitCodeOf(r.status)).toEqual({ code: 0 });
      expect(server.openStreams).toBe(0);
    } finally {
      ended = false;
      qemu.close();
    }
  });
});

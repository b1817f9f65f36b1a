// The aggregated API subresources.kata.sandbox.io end to end on the real control plane: the real
// kube-apiserver's aggregation layer authenticates users (client certificates) and proxies to the
// real kata-api process (deploy/'s APIService and RBAC), which authorizes with a
// SubjectAccessReview and reads from a node agent's stream endpoint (the node agent's own
// StreamServer, in this process, with the real TokenReview) found through the node's Lease.
// Users run bin/kubectl-kata with their own kubeconfig. What needs a VM (a container's real
// output, restarts) is in test/e2e/kata-api-logs.test.ts.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT, freshNamespace } from './cluster.js';
import { eventually, installControllerPrereqs, kubectl } from './controller-harness.js';
import { installNodeAgentRbac } from '../e2e/node-agent-harness.js';
import { httpsGet } from './metrics-harness.js';
import {
  planePki,
  rawGet,
  runProgram,
  serviceAccountToken,
  unregisterApiService,
  userKubeConfig,
  writeNodeLease,
  type RunningKataApi,
  serveKataApi,
} from './kata-api-harness.js';
import { StreamServer, type StreamSandbox } from '../../src/node-agent/stream/stream-server.js';
import { endpointUrl, streamAnnotations } from '../../src/node-agent/stream/stream-endpoint.js';
import { selfSignedCertificate } from '../../src/observability/self-signed-cert.js';
import { reviewBoundToken } from '../../src/kube/access-reviews.js';
import { adminKubeConfig } from './cluster.js';
import { createLogger } from '../../src/observability/logger.js';
import { STREAM_TOKEN_AUDIENCE } from '../../src/subresources/contract.js';
import type { ContainerRunState } from '../../src/node-agent/state-store.js';
import { buildProcess } from '../../src/agent/process-spec.js';
import { LocalProcessAgent } from '../fixtures/local-process-agent.js';
import { encodeChunk } from '../../src/node-agent/runtime/log-format.js';

jest.setTimeout(240_000);

const NODE = `kapi-node-${process.pid}`;
const OTHER_NODE = `kapi-far-${process.pid}`;
const KUBECTL_KATA = path.join(REPO_ROOT, 'bin/kubectl-kata');
const SUB = '/apis/subresources.kata.sandbox.io/v1alpha1';

let work: string;
let ns: string;
let otherNs: string;
let api: RunningKataApi;
let node: StreamServer;
let nodeUrl: string;
let nodeCa: string;
let servingCa: string;
const kc: Record<'viewer' | 'editor' | 'outsider', string> = {
  viewer: '',
  editor: '',
  outsider: '',
};
/** What "the node agent" runs: sandbox name → its log dir and container states. */
const runs = new Map<
  string,
  {
    logDir: string;
    containers: Record<string, ContainerRunState>;
    consoleFile?: string;
    consoleSocket?: string;
    ended?: boolean;
  }
>();

const running = (restartCount = 0): ContainerRunState => ({
  created: true,
  started: true,
  state: 'Running',
  restartCount,
});

async function sandbox(name: string, nodeName: string, containers: string[]): Promise<void> {
  const body = {
    apiVersion: 'kata.sandbox.io/v1alpha1',
    kind: 'KataSandbox',
    metadata: { name, namespace: ns, labels: { 'kata.sandbox.io/node': nodeName } },
    spec: { containers: containers.map((c) => ({ name: c, image: 'busybox:1.36' })) },
  };
  await kubectl(['apply', '--server-side', '-f', '-'], JSON.stringify(body));
}

function run(name: string, containers: Record<string, string>): void {
  const logDir = path.join(work, 'logs', `${ns}_${name}`);
  mkdirSync(logDir, { recursive: true });
  for (const [c, text] of Object.entries(containers))
    writeFileSync(path.join(logDir, `${c}.log`), text);
  runs.set(name, {
    logDir,
    containers: Object.fromEntries(Object.keys(containers).map((c) => [c, running()])),
  });
}

/** The "guest" of the node agent here: this machine's processes (the stream path is the point). */
const processes = new LocalProcessAgent();

const kata = (user: keyof typeof kc, args: string[]) =>
  runProgram(KUBECTL_KATA, ['--kubeconfig', kc[user], ...args]);
const raw = (user: keyof typeof kc, p: string) =>
  runProgram('kubectl', ['--kubeconfig', kc[user], 'get', '--raw', p]);

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'kata-api-it-'));
  await installControllerPrereqs();
  await installNodeAgentRbac();
  for (const f of ['deploy/rbac/kata-api.yaml', 'deploy/rbac/user-roles.yaml']) {
    await kubectl(['apply', '--server-side', '-f', path.join(REPO_ROOT, f)]);
  }
  ns = await freshNamespace('kapi');
  otherNs = await freshNamespace('kapi-other');
  const bind = async (user: string, role: string, namespace: string): Promise<void> => {
    await kubectl([
      '-n',
      namespace,
      'create',
      'rolebinding',
      `${user}-${role}`,
      `--clusterrole=${role}`,
      `--user=${user}`,
    ]);
  };
  await bind('kapi-viewer', 'kata-sandbox-view', ns);
  await bind('kapi-editor', 'kata-sandbox-edit', ns);
  await bind('kapi-outsider', 'kata-sandbox-edit', otherNs);
  kc.viewer = await userKubeConfig('kapi-viewer', 'kapi-viewer');
  kc.editor = await userKubeConfig('kapi-editor', 'kapi-editor');
  kc.outsider = await userKubeConfig('kapi-outsider', 'kapi-outsider');
  for (const file of Object.values(kc)) {
    await kubectl([
      '--kubeconfig',
      file,
      'config',
      'set-context',
      '--current',
      `--namespace=${ns}`,
    ]);
  }

  await sandbox('one', NODE, ['main']);
  await sandbox('two', NODE, ['a', 'b']);
  await sandbox('far', OTHER_NODE, ['main']);
  run('one', { main: 'line 1\nline 2\nline 3\n' });
  run('two', { a: 'from a\n', b: 'from b\n' });

  // The node agent's endpoint, published on its Lease as the node agent does.
  const admin = await adminKubeConfig();
  const cert = selfSignedCertificate({
    commonName: `kata-node-agent-${NODE}`,
    hosts: ['127.0.0.1'],
  });
  nodeCa = cert.certPem;
  node = new StreamServer({
    port: 0,
    host: '127.0.0.1',
    cert: cert.certPem,
    key: cert.keyPem,
    reviewToken: (token, audiences) => reviewBoundToken(admin, token, audiences),
    sandbox: (namespace, name): StreamSandbox | undefined => {
      const r = runs.get(name);
      if (namespace !== ns || !r) return undefined;
      return {
        logDir: r.logDir,
        containerNames: Object.keys(r.containers),
        container: (c) => r.containers[c],
        ...(r.consoleFile && { consoleFile: r.consoleFile }),
        ...(r.consoleSocket && { consoleSocket: r.consoleSocket }),
        ended: () => r.ended ?? false,
        agent: () => processes,
        execProcess: (_c, command, tty) =>
          buildProcess({
            args: command,
            env: [{ name: 'PATH', value: process.env['PATH'] ?? '/usr/bin:/bin' }],
            cwd: '/',
            terminal: tty,
          }),
      };
    },
    logger: createLogger('test-node-agent', 'warn'),
  });
  nodeUrl = endpointUrl('127.0.0.1', await node.start());
  await writeNodeLease(NODE, streamAnnotations(nodeUrl, cert.certPem));

  api = await serveKataApi(work);
  servingCa = Buffer.from(
    (
      await kubectl([
        '-n',
        'kata-system',
        'get',
        'secret',
        'kata-api-serving-cert',
        '-o',
        'jsonpath={.data.tls\\.crt}',
      ])
    ).trim(),
    'base64',
  ).toString('utf8');
});

afterAll(async () => {
  await api?.stop();
  await node?.close();
  await unregisterApiService().catch(() => undefined);
  await kubectl([
    '-n',
    'kata-system',
    'delete',
    'lease',
    `kata-node-${NODE}`,
    '--ignore-not-found',
  ]).catch(() => undefined);
  if (ns)
    await kubectl(['-n', ns, 'delete', 'ksb', '--all', '--wait=false']).catch(() => undefined);
  if (api && process.env['KATA_KEEP_LOGS'] !== '1') rmSync(work, { recursive: true, force: true });
});

describe('who may do what', () => {
  it('a user with view reads the log with kubectl kata, and is refused exec', async () => {
    expect(await kata('viewer', ['logs', 'ksb/one'])).toEqual({
      code: 0,
      stdout: 'line 1\nline 2\nline 3\n',
      stderr: '',
    });
    const exec = await kata('viewer', ['exec', 'ksb/one', '--', 'echo', 'hi']);
    expect(exec.code).toBe(1);
    expect(exec.stdout).toBe('');
    expect(exec.stderr).toMatch(/Error from server \(Forbidden\).*katasandboxes\/exec/);
    expect((await kata('viewer', ['attach', 'ksb/one'])).stderr).toMatch(
      /Forbidden.*katasandboxes\/attach/,
    );
  });

  it("a user with edit execs through the aggregator, kata-api and the node agent, with the command's exit code", async () => {
    const r = await kata('editor', ['exec', 'ksb/one', '--', 'sh', '-c', 'echo $((6*7)); exit 3']);
    expect(r).toEqual({ code: 3, stdout: '42\n', stderr: 'command terminated with exit code 3\n' });
    const stdin = await runProgram('sh', [
      '-c',
      `printf 'a\\nb\\n' | ${KUBECTL_KATA} --kubeconfig ${kc.editor} exec -i one -- wc -l`,
    ]);
    expect(stdin).toMatchObject({ code: 0, stdout: '2\n' });
    // Without the upgrade, exec says how it is served.
    const plain = await raw('editor', `${SUB}/namespaces/${ns}/katasandboxes/one/exec`);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/upgrade to a WebSocket/);
    expect((await kata('editor', ['logs', 'one'])).stdout).toBe('line 1\nline 2\nline 3\n');
  });

  it('-i carries 10 MiB of stdin through the whole chain, the hash unchanged', async () => {
    const data = randomBytes(10 << 20);
    const file = path.join(work, 'stdin.bin');
    writeFileSync(file, data);
    const r = await runProgram('sh', [
      '-c',
      `${KUBECTL_KATA} --kubeconfig ${kc.editor} exec -i ksb/one -- sha256sum < ${file}`,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout.split(/\s+/)[0]).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it("a user of another namespace gets 403 and kubectl's exit code 1", async () => {
    const r = await kata('outsider', ['logs', 'ksb/one']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Error from server \(Forbidden\)/);
    expect(r.stdout).toBe('');
    const exec = await kata('outsider', ['exec', 'ksb/one', '--', 'true']);
    expect(exec.code).toBe(1);
    expect(exec.stderr).toMatch(/Error from server \(Forbidden\).*katasandboxes\/exec/);
  });

  it('kata-api makes its own SubjectAccessReview: the front proxy vouching for a viewer does not get exec', async () => {
    const pki = await planePki();
    const proxy = {
      cert: readFileSync(path.join(pki, 'front-proxy-client.crt'), 'utf8'),
      key: readFileSync(path.join(pki, 'front-proxy-client.key'), 'utf8'),
    };
    const as = (user: string, sub: string) =>
      rawGet({
        port: api.port,
        ca: servingCa,
        path: `${SUB}/namespaces/${ns}/katasandboxes/one/${sub}`,
        headers: { 'X-Remote-User': user },
        ...proxy,
      });
    expect(await as('kapi-viewer', 'log')).toEqual({
      status: 200,
      body: 'line 1\nline 2\nline 3\n',
    });
    const exec = await as('kapi-viewer', 'exec');
    expect(exec.status).toBe(403);
    expect(JSON.parse(exec.body)).toMatchObject({ kind: 'Status', reason: 'Forbidden', code: 403 });
    expect((await as('kapi-outsider', 'log')).status).toBe(403);
  });

  it('refuses front-proxy headers from a client without the proxy certificate', async () => {
    const pki = await planePki();
    const path_ = `${SUB}/namespaces/${ns}/katasandboxes/one/log`;
    const forged = { 'X-Remote-User': 'kata-admin', 'X-Remote-Group': 'system:masters' };
    const bare = await rawGet({ port: api.port, ca: servingCa, path: path_, headers: forged });
    expect(bare.status).toBe(401);
    // A certificate the API server accepts from users, but not from the request-header CA.
    const user = await rawGet({
      port: api.port,
      ca: servingCa,
      path: path_,
      headers: forged,
      cert: readFileSync(path.join(pki, 'admin.crt'), 'utf8'),
      key: readFileSync(path.join(pki, 'admin.key'), 'utf8'),
    });
    expect(user.status).toBe(401);
    expect(JSON.parse(user.body)).toMatchObject({ reason: 'Unauthorized' });
  });
});

describe("the node agent's stream endpoint", () => {
  const logPath = (name: string) => `${nodeUrl}/v1/namespaces/${ns}/katasandboxes/${name}/log`;

  it("serves kata-api's bound token and refuses every other identity", async () => {
    expect((await httpsGet(logPath('one'), { ca: nodeCa })).status).toBe(401);
    const controller = await serviceAccountToken('kata-controller', [STREAM_TOKEN_AUDIENCE]);
    expect((await httpsGet(logPath('one'), { ca: nodeCa, token: controller })).status).toBe(403);
    // kata-api's own token, but for the API server's audience: not for this endpoint.
    const apiAudience = await serviceAccountToken('kata-api', []);
    expect((await httpsGet(logPath('one'), { ca: nodeCa, token: apiAudience })).status).toBe(403);
    const ok = await httpsGet(logPath('one'), {
      ca: nodeCa,
      token: await serviceAccountToken('kata-api', [STREAM_TOKEN_AUDIENCE]),
    });
    expect(ok).toEqual({ status: 200, body: 'line 1\nline 2\nline 3\n' });
  });

  it('refuses a sandbox of another node', async () => {
    const token = await serviceAccountToken('kata-api', [STREAM_TOKEN_AUDIENCE]);
    const r = await httpsGet(logPath('far'), { ca: nodeCa, token });
    expect(r.status).toBe(404);
    expect(r.body).toMatch(/does not run on this node/);
    // Through kata-api: that node has no node agent publishing an endpoint.
    const via = await kata('editor', ['logs', 'ksb/far']);
    expect(via.code).toBe(1);
    expect(via.stderr).toMatch(/ServiceUnavailable|has no node agent/);
  });
});

describe('kubectl kata logs options', () => {
  it('--tail, --limit-bytes, and -c (required with two containers)', async () => {
    expect((await kata('viewer', ['logs', 'ksb/one', '--tail', '2'])).stdout).toBe(
      'line 2\nline 3\n',
    );
    expect((await kata('viewer', ['logs', 'ksb/one', '--tail=0'])).stdout).toBe('');
    expect((await kata('viewer', ['logs', 'ksb/one', '--limit-bytes=5'])).stdout).toBe('line ');
    const both = await kata('viewer', ['logs', 'ksb/two']);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/a container name must be specified.*\[a b\]/);
    expect((await kata('viewer', ['logs', 'ksb/two', '-c', 'b'])).stdout).toBe('from b\n');
    const bad = await kata('viewer', ['logs', 'ksb/two', '-c', 'zz']);
    expect(bad).toMatchObject({ code: 1 });
    expect(bad.stderr).toMatch(/container zz is not valid/);
  });

  it('--previous serves the run before the restart, and only after one', async () => {
    const r = runs.get('one');
    if (!r) throw new Error('no run');
    const noPrevious = await kata('viewer', ['logs', 'ksb/one', '-p']);
    expect(noPrevious.code).toBe(1);
    expect(noPrevious.stderr).toMatch(/previous terminated container "main" not found/);
    writeFileSync(path.join(r.logDir, 'main.previous.log'), 'the run before\n');
    r.containers['main'] = running(1);
    expect(await kata('viewer', ['logs', 'ksb/one', '--previous'])).toMatchObject({
      code: 0,
      stdout: 'the run before\n',
    });
  });

  it('--timestamps, --since and --since-time read the times the node agent wrote', async () => {
    run('stamped', {});
    await sandbox('stamped', NODE, ['main']);
    const r = runs.get('stamped');
    if (!r) throw new Error('no run');
    const old = new Date(Date.now() - 2 * 3600_000).toISOString();
    const recent = new Date().toISOString();
    writeFileSync(
      path.join(r.logDir, 'main.log'),
      Buffer.concat([
        encodeChunk(Buffer.from('old line\n'), 'stdout', old),
        encodeChunk(Buffer.from('new line\n'), 'stderr', recent),
      ]),
    );
    r.containers['main'] = running();
    expect((await kata('viewer', ['logs', 'ksb/stamped'])).stdout).toBe('old line\nnew line\n');
    expect((await kata('viewer', ['logs', 'ksb/stamped', '--timestamps'])).stdout).toBe(
      `${old} old line\n${recent} new line\n`,
    );
    expect((await kata('viewer', ['logs', 'ksb/stamped', '--since=1h'])).stdout).toBe('new line\n');
    const sinceTime = new Date(Date.now() - 3 * 3600_000).toISOString();
    expect(
      (await kata('viewer', ['logs', 'ksb/stamped', `--since-time=${sinceTime}`])).stdout,
    ).toBe('old line\nnew line\n');
    const both = await kata('viewer', [
      'logs',
      'ksb/stamped',
      '--since=1h',
      `--since-time=${sinceTime}`,
    ]);
    expect(both.code).toBe(2);
    const bad = await raw(
      'viewer',
      `${SUB}/namespaces/${ns}/katasandboxes/stamped/log?sinceTime=soon`,
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/sinceTime: "soon" is not an RFC 3339 time/);
  });

  it('usage errors exit 2 without asking the server', async () => {
    expect((await kata('viewer', ['logs'])).code).toBe(2);
    expect((await kata('viewer', ['logs', 'pod/x'])).code).toBe(2);
    expect((await kata('viewer', ['logs', 'one', '--tail', 'x'])).code).toBe(2);
    const help = await runProgram(KUBECTL_KATA, ['--help']);
    expect(help).toMatchObject({ code: 0 });
    expect(help.stdout).toMatch(/kubectl kata logs/);
  });
});

describe('kubectl kata console (read only)', () => {
  it("prints the VM console's output to edit, with --tail; view is refused", async () => {
    const r = runs.get('two');
    if (!r) throw new Error('no run');
    const file = path.join(work, 'console-two.log');
    writeFileSync(file, 'kata-guest-init: one\nkata-guest-init: two\n');
    r.consoleFile = file;
    expect(await kata('editor', ['console', 'ksb/two'])).toEqual({
      code: 0,
      stdout: 'kata-guest-init: one\nkata-guest-init: two\n',
      stderr: '',
    });
    expect((await kata('editor', ['console', 'ksb/two', '--tail', '1'])).stdout).toBe(
      'kata-guest-init: two\n',
    );
    const viewer = await kata('viewer', ['console', 'ksb/two']);
    expect(viewer.code).toBe(1);
    expect(viewer.stderr).toMatch(/Forbidden.*katasandboxes\/console/);
    // No VM yet: nothing to show.
    const none = await kata('editor', ['console', 'ksb/one']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no VM console yet/);
  });
});

describe('kubectl kata console -i (WebSocket through the aggregator)', () => {
  it("follows the console and sends what is typed to the VM's console socket, until the sandbox ends", async () => {
    const r = runs.get('two');
    if (!r?.consoleFile) throw new Error('no console (the read-only test runs first)');
    r.consoleSocket = path.join(work, 'console-two.sock');
    let typed = '';
    const qemu = createServer((c) => c.on('data', (d: Buffer) => (typed += d.toString())));
    await new Promise<void>((resolve) => qemu.listen(r.consoleSocket, resolve));
    try {
      const child = spawn(KUBECTL_KATA, ['--kubeconfig', kc.editor, 'console', '-i', 'ksb/two']);
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      await eventually(
        'the console so far',
        async () => (out.includes('kata-guest-init: two\n') ? true : undefined),
        60_000,
      );
      child.stdin.write('hello console\n');
      await eventually(
        'input at the console socket',
        async () => (typed === 'hello console\n' ? true : undefined),
        60_000,
      );
      appendFileSync(r.consoleFile, 'kata-guest-init: three\n');
      await eventually(
        'followed',
        async () => (out.includes('kata-guest-init: three\n') ? true : undefined),
        60_000,
      );
      expect(node.openStreams).toBe(1);
      r.ended = true;
      expect(await exited).toBe(0);
      const viewer = await kata('viewer', ['console', '-f', 'ksb/two']);
      expect(viewer.code).toBe(1);
      expect(viewer.stderr).toMatch(/Forbidden.*katasandboxes\/console/);
    } finally {
      r.ended = false;
      qemu.close();
    }
  });
});

describe('follow', () => {
  it('-f prints what is appended, through a rotation, and ends when the container exits', async () => {
    run('one', { main: 'first\n' });
    const r = runs.get('one');
    if (!r) throw new Error('no run');
    const file = path.join(r.logDir, 'main.log');
    const child = spawn(KUBECTL_KATA, ['--kubeconfig', kc.viewer, 'logs', '-f', 'ksb/one']);
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    await eventually(
      "out === 'first\\n'",
      async () => (out === 'first\n' ? true : undefined),
      60_000,
    );
    appendFileSync(file, 'second\n');
    await eventually(
      "out === 'first\\nsecond\\n'",
      async () => (out === 'first\nsecond\n' ? true : undefined),
      60_000,
    );
    // Rotation as ContainerLog does it: the file renamed to .1, a new one started.
    renameSync(file, `${file}.1`);
    writeFileSync(file, 'third\n');
    await eventually(
      "out === 'first\\nsecond\\nthird\\n'",
      async () => (out === 'first\nsecond\nthird\n' ? true : undefined),
      60_000,
    );
    expect(node.openStreams).toBe(1);
    r.containers['main'] = { ...running(), state: 'Exited', exitCode: 0 };
    expect(await exited).toBe(0);
    expect(out).toBe('first\nsecond\nthird\n');
    await eventually(
      'node.openStreams === 0',
      async () => (node.openStreams === 0 ? true : undefined),
      30_000,
    );
  });

  it('a client killed mid-follow leaves no open stream on the node', async () => {
    run('one', { main: 'still running\n' });
    // Its own process group, killed whole as a terminal's hangup does (plugin and kubectl).
    const child = spawn(KUBECTL_KATA, ['--kubeconfig', kc.viewer, 'logs', '-f', 'ksb/one'], {
      detached: true,
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await eventually(
      "out === 'still running\\n'",
      async () => (out === 'still running\n' ? true : undefined),
      60_000,
    );
    expect(node.openStreams).toBe(1);
    const pid = child.pid;
    if (!pid) throw new Error('kubectl kata did not start');
    process.kill(-pid, 'SIGKILL');
    await eventually(
      'node.openStreams === 0',
      async () => (node.openStreams === 0 ? true : undefined),
      60_000,
    );
  });
});

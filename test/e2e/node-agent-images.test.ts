// Container images end to end: Debian's docker-registry on 127.0.0.1 (one open, one behind
// htpasswd), images built here with umoci and pushed with skopeo, the real controller and node
// agent, real QEMU. What the containers print proves the image config was honoured; the node
// agent's metrics and Events count the pulls; the cache on disk is checked after sandboxes wrote
// to their root filesystems.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, lstatSync } from 'node:fs';
import path from 'node:path';
import type { KataSandbox } from '../../src/crds/index.js';
import { mountsUnder, readMountInfo } from '../../src/node-agent/storage/mountinfo.js';
import { adminKubeConfig, freshNamespace } from '../integration/cluster.js';
import {
  eventually,
  grantElectionLease,
  installControllerPrereqs,
  kubectl,
  revokeElectionLease,
  startController,
  type RunningController,
} from '../integration/controller-harness.js';
import {
  buildBusyboxImage,
  pushImage,
  startRegistry,
  type TestRegistry,
} from '../integration/images-registry.js';
import {
  installNodeAgentRbac,
  nodeBoundIdentity,
  startNodeAgent,
  type NodeBoundIdentity,
  type NodeAgentDirs,
  type RunningNodeAgent,
} from './node-agent-harness.js';
import { phase, qemuPidsOf, removeScratch, SandboxApi, waitForFile } from './sandbox-api.js';
import { ensureImage } from './sandbox-vm.js';

jest.setTimeout(600_000);

const ELECTION_ID = `kata-controller-e2e-img-${process.pid}`;
const NODE = `e2e-img-${process.pid}`;
const CREDS = { username: 'puller', password: 'pull-secret-pw' };

/** The image's program: prints what it was given, writes into /, optionally meets its peers. */
const SHOW_SH = `echo "args: $*"
echo "greeting=$GREETING extra=$EXTRA"
echo "pwd=$(pwd)"
echo "$ME" > "/mine-$ME"
if [ -n "$SYNC" ]; then
  touch "$SYNC/$ME"
  i=0
  while [ $i -lt 120 ]; do
    set -- "$SYNC"/*
    [ $# -ge 2 ] && break
    sleep 1
    i=$((i+1))
  done
fi
echo "root:" /mine-*
`;

let base: string;
let dirs: NodeAgentDirs;
let cacheDir: string;
let agentLog: string;
let metricsPort: number;
let open: TestRegistry;
let locked: TestRegistry;
let layoutV2: string;
let digest1: string;
let ns: string;
let sandboxes: SandboxApi;
let controller: RunningController | undefined;
let agent: RunningNodeAgent | undefined;
let identity: NodeBoundIdentity | undefined;

function logOf(sb: KataSandbox, container: string): string {
  const m = sb.metadata;
  return readFileSync(
    path.join(dirs.logDir, `${m.namespace}_${m.name}_${m.uid}`, `${container}.log`),
    'utf8',
  );
}

/** The first line of a component's log matching `re`. */
async function logLine(re: RegExp, file: string): Promise<string> {
  return eventually(`a log line matching ${String(re)}`, async () =>
    readFileSync(file, 'utf8')
      .split('\n')
      .find((l) => re.test(l)),
  );
}

/** The node agent's /metrics, parsed to name{labels} → value. */
async function metrics(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(kata_node_image_[a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

const pullsOk = (m: Map<string, number>): number =>
  m.get('kata_node_image_pulls_total{result="success"}') ?? 0;
const cacheHits = (m: Map<string, number>): number =>
  m.get('kata_node_image_cache_hits_total') ?? 0;

/** Every file of the cached root filesystems, with mode, size and content: never to change. */
function cacheFingerprint(): string {
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const st = lstatSync(p);
      h.update(`${p}\0${st.mode}\0${st.size}\0`);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) h.update(readFileSync(p));
    }
  };
  for (const img of readdirSync(path.join(cacheDir, 'images')).sort()) {
    walk(path.join(cacheDir, 'images', img, 'rootfs'));
  }
  return h.digest('hex');
}

/** Every file under the cached rootfs trees named like what the containers wrote. */
function writtenIntoCache(): string[] {
  const found: string[] = [];
  for (const img of readdirSync(path.join(cacheDir, 'images'))) {
    const rootfs = path.join(cacheDir, 'images', img, 'rootfs');
    if (!existsSync(rootfs)) continue;
    for (const f of readdirSync(rootfs)) if (f.startsWith('mine-')) found.push(path.join(img, f));
  }
  return found;
}

/** What is left of sandbox `uid`: views, mounts, share, QEMU, cache leases. */
async function leftovers(uid: string): Promise<object> {
  const views = path.join(dirs.stateDir, 'rootfs-views', uid);
  const leasesFile = path.join(cacheDir, 'leases.json');
  const leases = existsSync(leasesFile)
    ? (JSON.parse(readFileSync(leasesFile, 'utf8')) as Record<string, string[]>)
    : {};
  return {
    views: existsSync(views),
    share: existsSync(path.join(dirs.runDir, 'shared', uid)),
    mounts: mountsUnder(await readMountInfo(), views).map((m) => m.mountPoint),
    qemu: qemuPidsOf(uid),
    lease: leases[uid] ?? [],
  };
}

/** The end is reported first and the host released right after: wait for it to be clean. */
async function expectHostClean(uid: string): Promise<void> {
  const clean = { views: false, share: false, mounts: [], qemu: [], lease: [] };
  const deadline = Date.now() + 30_000;
  let left = await leftovers(uid);
  while (JSON.stringify(left) !== JSON.stringify(clean) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    left = await leftovers(uid);
  }
  expect(left).toEqual(clean);
}

/** Polls a sandbox quickly, collecting every waiting reason its container showed, until `done`. */
async function reasonsUntil(
  name: string,
  container: string,
  done: (seen: Set<string>, sb: KataSandbox | undefined) => boolean,
  timeoutMs = 180_000,
): Promise<{ seen: Set<string>; last: KataSandbox | undefined }> {
  const seen = new Set<string>();
  const deadline = Date.now() + timeoutMs;
  let last: KataSandbox | undefined;
  while (Date.now() < deadline) {
    last = await sandboxes.get(name);
    const c = last?.status?.containers?.find((x) => x.name === container);
    if (c?.reason) seen.add(c.reason);
    if (done(seen, last)) return { seen, last };
    if (last?.status?.phase === 'Failed') break;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(
    `${name}: saw ${[...seen].join(', ')}; last status ${JSON.stringify(last?.status, null, 1)}`,
  );
}

beforeAll(async () => {
  ensureImage();
  await installControllerPrereqs();
  await installNodeAgentRbac();
  await grantElectionLease(ELECTION_ID);
  ns = await freshNamespace('node-agent-img');
  sandboxes = new SandboxApi(await adminKubeConfig(), ns, NODE);

  base = mkdtempSync('/tmp/kna-img-');
  const work = path.join(base, 'build');
  mkdirSync(work);
  open = await startRegistry();
  locked = await startRegistry({ auth: CREDS });
  const image = {
    entrypoint: ['/bin/sh', '/app/show.sh'],
    cmd: ['from-cmd'],
    env: ['GREETING=from-image', 'EXTRA=image-default', 'PATH=/bin'],
    workingDir: '/app',
    user: 'app',
    files: { 'app/show.sh': SHOW_SH },
  };
  const layout = await buildBusyboxImage(work, image);
  digest1 = await pushImage(layout, open, 'test/busybox:1');
  await pushImage(layout, locked, 'private/busybox:1');
  // Tag 2 (pushed later by a test): different content, so its pull really downloads.
  layoutV2 = await buildBusyboxImage(work, { ...image, env: ['GREETING=v2', 'PATH=/bin'] });

  const roots = path.join(base, 'roots');
  mkdirSync(path.join(roots, 'sync'), { recursive: true });
  dirs = {
    stateDir: path.join(base, 'state'),
    runDir: path.join(base, 'run'),
    logDir: path.join(base, 'logs'),
    roots: [roots],
  };
  cacheDir = path.join(base, 'image-cache');
  agentLog = path.join(base, 'node-agent.log');
  // Pull secrets reach a node agent only through projections sealed to its key, which it
  // publishes only with a token bound to its node (docs/images.md).
  identity = await nodeBoundIdentity(NODE);
  controller = await startController(`e2e-node-agent-img-${process.pid}`, {
    namespace: ns,
    electionId: ELECTION_ID,
  });
  await runAgent();
}, 30 * 60_000);

/** Starts the node agent (logging to a new file each time) and finds its metrics port. */
async function runAgent(): Promise<void> {
  agentLog = path.join(base, `node-agent-${Date.now()}.log`);
  agent = await startNodeAgent(
    NODE,
    dirs,
    agentLog,
    [
      '--image-cache-dir',
      cacheDir,
      '--insecure-registries',
      `${open.host},${locked.host}`,
      '--allowed-registries',
      `${open.host},${locked.host}`,
      '--image-pull-backoff-ms',
      '4000',
    ],
    identity,
  );
  const served = await waitForFile(agentLog, /"port":(\d+)[^\n]*serving \/metrics/);
  metricsPort = Number(/"port":(\d+)[^\n]*serving \/metrics/.exec(served)![1]);
}

afterAll(async () => {
  await agent?.stop('SIGKILL');
  await controller?.stop();
  await identity?.remove();
  await revokeElectionLease(ELECTION_ID).catch(() => '');
  await open?.stop();
  await locked?.stop();
  if (base) await removeScratch(base);
}, 120_000);

describe('kata-node-agent container images (real registry, real QEMU)', () => {
  let img: string;

  it("runs an image by its Entrypoint, Cmd, Env and WorkingDir; two sandboxes' writes to / stay their own", async () => {
    img = `${open.host}/test/busybox:1`;
    const sync = path.join(dirs.roots[0]!, 'sync');
    const volume = { name: 'sync', hostPath: { path: sync } };
    const common = {
      image: img,
      // The image's user (app) may not write to /; the writers run as root.
      user: '0',
      volumeMounts: [{ name: 'sync', mountPath: '/sync' }],
    };
    const createdA = await sandboxes.create('img-a', {
      volumes: [volume],
      containers: [
        {
          name: 'main',
          ...common,
          env: [
            { name: 'ME', value: 'a' },
            { name: 'EXTRA', value: 'from-container' },
            { name: 'SYNC', value: '/sync' },
          ],
        },
      ],
    });
    await sandboxes.create('img-b', {
      volumes: [volume],
      containers: [
        {
          name: 'main',
          ...common,
          args: ['from-args'],
          env: [
            { name: 'ME', value: 'b' },
            { name: 'SYNC', value: '/sync' },
          ],
        },
      ],
    });
    // Pulling lasts as long as the pull (well under a second on a quiet machine): watched, not polled.
    const { seen } = await sandboxes.reasonsSeen(
      'img-a',
      'main',
      createdA.metadata.resourceVersion as string,
      (_s, sb) => phase('Succeeded')(sb),
    );
    expect(seen.has('Pulling')).toBe(true);
    const a = (await sandboxes.waitFor('img-a', 'Succeeded', phase('Succeeded')))!;
    const b = (await sandboxes.waitFor('img-b', 'Succeeded', phase('Succeeded')))!;

    // Entrypoint + Cmd, image Env merged under the container's, WorkingDir.
    const outA = logOf(a, 'main');
    expect(outA).toContain('args: from-cmd');
    expect(outA).toContain('greeting=from-image extra=from-container');
    expect(outA).toContain('pwd=/app');
    // args replace Cmd and keep the Entrypoint; the image's EXTRA stays where the container set none.
    const outB = logOf(b, 'main');
    expect(outB).toContain('args: from-args');
    expect(outB).toContain('greeting=from-image extra=image-default');
    // Both ran at once (they met in /sync), each saw only its own file in /.
    expect(readdirSync(sync).sort()).toEqual(['a', 'b']);
    expect(outA).toContain('root: /mine-a\n');
    expect(outB).toContain('root: /mine-b\n');
    expect(writtenIntoCache()).toEqual([]);

    // One download served both (shared pull or cache hit); Events name size and time.
    expect(readdirSync(path.join(cacheDir, 'images'))).toHaveLength(1);
    expect(await sandboxes.eventCount('img-a', 'Pulled')).toBe(1);
    for (const s of [a, b]) await expectHostClean(s.metadata.uid!);
  });

  it('a second sandbox is served from the cache; a command override, a digest reference and Always', async () => {
    const before = await metrics();
    const fingerprint = cacheFingerprint();
    const repo = `${open.host}/test/busybox`;
    await sandboxes.create('again', {
      containers: [
        {
          name: 'cmd',
          image: img,
          command: ['/bin/sh', '-c', 'echo "overridden uid=$(id -u) gid=$(id -g) groups=$(id -G)"'],
        },
        { name: 'pinned', image: `${repo}@${digest1}`, args: ['by-digest'] },
        { name: 'always', image: img, imagePullPolicy: 'Always', args: ['always'] },
      ],
    });
    const sb = (await sandboxes.waitFor('again', 'Succeeded', phase('Succeeded')))!;
    // command replaces the Entrypoint (and drops Cmd); the image's named user app is 1001:1002,
    // with its supplementary group wheel (10) from the image's /etc/group.
    expect(logOf(sb, 'cmd')).toMatch(/overridden uid=1001 gid=1002 groups=.*\b10\b/);
    expect(logOf(sb, 'pinned')).toContain('args: by-digest');
    expect(logOf(sb, 'always')).toContain('args: always');

    // Only `always` asked the registry; nothing was downloaded again.
    const after = await metrics();
    expect(pullsOk(after) - pullsOk(before)).toBe(1);
    expect(cacheHits(after) - cacheHits(before)).toBe(3);
    expect(await sandboxes.eventCount('again', 'Pulling')).toBe(1);
    expect(readdirSync(path.join(cacheDir, 'images'))).toHaveLength(1);
    expect(cacheFingerprint()).toBe(fingerprint);
    await expectHostClean(sb.metadata.uid!);
  });

  it('a private repository: pulled with an imagePullSecret, refused clearly without one', async () => {
    await kubectl(
      [
        'create',
        'secret',
        'docker-registry',
        'regcred',
        '-n',
        ns,
        '--docker-server',
        locked.host,
        '--docker-username',
        CREDS.username,
        '--docker-password',
        CREDS.password,
      ],
      undefined,
    );
    const image = `${locked.host}/private/busybox:1`;
    await sandboxes.create('priv-ok', {
      imagePullSecrets: [{ name: 'regcred' }],
      containers: [{ name: 'main', image, args: ['private'], env: [{ name: 'ME', value: 'p' }] }],
    });
    const ok = (await sandboxes.waitFor('priv-ok', 'Succeeded', phase('Succeeded')))!;
    expect(logOf(ok, 'main')).toContain('args: private');
    // The credential came through the controller's projection for this node, which goes once
    // the sandbox has ended.
    expect(
      await logLine(
        /"why":"missing"[^\n]*projected imagePullSecrets|projected imagePullSecrets[^\n]*"why":"missing"/,
        controller!.logFile,
      ),
    ).toContain(ok.metadata.uid!);
    await eventually(
      'the projection of priv-ok deleted',
      async () =>
        (
          await kubectl([
            ...['-n', 'kata-system', 'get', 'secret'],
            `kata-pull-${ok.metadata.uid}`,
            '--ignore-not-found',
            '-o',
            'name',
          ])
        ).trim() === ''
          ? true
          : undefined,
      60_000,
    );

    // Cached now, yet a sandbox without the credential must not get it.
    await sandboxes.create('priv-no', {
      containers: [{ name: 'main', image, env: [{ name: 'ME', value: 'q' }] }],
    });
    const { last } = await reasonsUntil('priv-no', 'main', (seen) => seen.has('ImagePullBackOff'));
    const c = last!.status!.containers!.find((x) => x.name === 'main')!;
    expect(c.state).toBe('Waiting');
    expect(c.message).toMatch(/authentication required|unauthorized/i);
    expect(c.message).toContain('no imagePullSecret');
    expect(last!.status!.phase).toBe('Creating');
    const ready = last!.status!.conditions!.find((x) => x.type === 'ContainersReady')!;
    expect(ready.reason).toMatch(/ErrImagePull|ImagePullBackOff/);
    expect(await sandboxes.eventCount('priv-no', 'Failed')).toBeGreaterThan(0);
    // Deleting a sandbox while it backs off leaves nothing behind.
    const uid = last!.metadata.uid!;
    await sandboxes.delete('priv-no');
    await sandboxes.waitFor('priv-no', 'deleted', (s) => s === undefined);
    await expectHostClean(uid);
    await expectHostClean(ok.metadata.uid!);
  });

  it('a missing tag: ErrImagePull, then ImagePullBackOff with the registry message, Running once pushed; adopted after a node agent kill -9', async () => {
    await sandboxes.create('late', {
      containers: [
        {
          name: 'main',
          image: `${open.host}/test/busybox:2`,
          command: ['/bin/sh', '-c', 'echo "greeting=$GREETING"; exec sleep 600'],
        },
      ],
      terminationGracePeriodSeconds: 1,
    });
    const { last } = await reasonsUntil(
      'late',
      'main',
      (s) => s.has('ErrImagePull') && s.has('ImagePullBackOff'),
    );
    const c = last!.status!.containers!.find((x) => x.name === 'main')!;
    expect(c.message).toMatch(/manifest unknown|not found/i);
    expect(c.message).toContain('test/busybox:2');
    expect(last!.status!.phase).toBe('Creating');

    const digest2 = await pushImage(layoutV2, open, 'test/busybox:2');
    const sb = (await sandboxes.waitFor('late', 'Running', phase('Running')))!;
    await waitForFile(
      path.join(dirs.logDir, `${ns}_late_${sb.metadata.uid}`, 'main.log'),
      /greeting=v2/,
    );
    expect(existsSync(path.join(cacheDir, 'images', digest2.replace(':', '-'), 'rootfs'))).toBe(
      true,
    );
    // The refusal and the retry were announced (repeats fold into an Event series) and counted.
    for (const reason of ['Pulling', 'Failed', 'BackOff', 'Pulled']) {
      expect([reason, (await sandboxes.eventCount('late', reason)) > 0]).toEqual([reason, true]);
    }
    expect(
      (await metrics()).get('kata_node_image_pulls_total{result="not_found"}'),
    ).toBeGreaterThanOrEqual(1);

    // A new node agent adopts the VM and keeps the container's view; nothing is pulled again.
    const pid = sb.status!.vm!.pid!;
    const merged = path.join(dirs.stateDir, 'rootfs-views', sb.metadata.uid!, 'main', 'merged');
    await agent!.stop('SIGKILL');
    await runAgent();
    await waitForFile(agentLog, /adopted the running VM/, 120_000);
    const adopted = (await sandboxes.waitFor('late', 'Running', phase('Running'), 60_000))!;
    expect(adopted.status!.vm!.pid).toBe(pid);
    expect(qemuPidsOf(sb.metadata.uid!)).toEqual([pid]);
    expect((await readMountInfo()).filter((m) => m.mountPoint === merged)).toHaveLength(1);
    expect(pullsOk(await metrics())).toBe(0);
    await sandboxes.delete('late');
    await sandboxes.waitFor('late', 'deleted', (s) => s === undefined);
    await expectHostClean(sb.metadata.uid!);
  });

  it('a bad reference: refused at admission by the CRD rule, or failed InvalidImageName by the node agent', async () => {
    const refused = await sandboxes
      .create('badref-crd', { containers: [{ name: 'main', image: 'UPPER/Case:1' }] })
      .then(
        () => undefined,
        (err: { code?: number; body?: unknown }) => err,
      );
    expect(refused?.code).toBe(422);
    expect(JSON.stringify(refused?.body)).toContain('spec.containers[0].image');
    expect(JSON.stringify(refused?.body)).toContain('must be an image reference');
    // The grammar allows it; the name is longer than a registry accepts (255).
    const sb = await sandboxes.create('badref', {
      containers: [{ name: 'main', image: `${open.host}/${'a'.repeat(300)}:1` }],
    });
    const failed = (await sandboxes.waitFor('badref', 'Failed', phase('Failed')))!;
    expect(failed.status!.reason).toBe('InvalidImageName');
    expect(failed.status!.message).toContain('spec.containers[0].image');
    expect(failed.status!.message).toContain('longer than 255');
    expect(existsSync(path.join(dirs.runDir, 'shared', sb.metadata.uid!))).toBe(false);
    expect(qemuPidsOf(sb.metadata.uid!)).toEqual([]);
  });

  it('a registry the node does not allow (--allowed-registries): Failed RegistryNotAllowed before any pull', async () => {
    const sb = await sandboxes.create('not-allowed', {
      containers: [{ name: 'main', image: '127.0.0.1:9/test/busybox:1' }],
    });
    const failed = (await sandboxes.waitFor('not-allowed', 'Failed', phase('Failed')))!;
    expect(failed.status!.reason).toBe('RegistryNotAllowed');
    expect(failed.status!.message).toBe(
      `spec.containers[0].image: registry "127.0.0.1:9" is not in this node's allowed registries (${open.host}, ${locked.host})`,
    );
    expect(failed.status!.conditions?.find((c) => c.type === 'ContainersReady')).toMatchObject({
      status: 'False',
      reason: 'RegistryNotAllowed',
    });
    expect(await sandboxes.eventCount('not-allowed', 'RegistryNotAllowed')).toBeGreaterThan(0);
    expect(existsSync(path.join(dirs.runDir, 'shared', sb.metadata.uid!))).toBe(false);
    expect(qemuPidsOf(sb.metadata.uid!)).toEqual([]);
    await sandboxes.delete('not-allowed');
    // (waitFor stops at an ended phase; the deletion of a Failed sandbox is polled here.)
    const end = Date.now() + 60_000;
    while ((await sandboxes.get('not-allowed')) !== undefined && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(await sandboxes.get('not-allowed')).toBeUndefined();
  });
});

// Warm pools end to end: real control plane, controller and node agent (with a token bound to its
// node, as the DaemonSet's), real QEMU. A KataWarmPool of 2 on the node; two sandboxes created at
// once both take warm VMs (no boot), one with a 9p volume and one with a netns network reached
// from the test's own namespaces; the pool refills; kill -9 of the node agent adopts warm and
// claimed VMs alike; a claimed VM dies with its sandbox; a block rootfs is hot-plugged and a CNI
// network attached to a taken VM; a sandbox finding no ready VM boots cold at once, saying why;
// deleting the pool stops its warm VMs only.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import type { KataWarmPool } from '../../src/crds/index.js';
import { adminKubeConfig, freshNamespace, REPO_ROOT } from '../integration/cluster.js';
import type { AuditReport } from '../../src/node-agent/leak-audit/classify.js';
import {
  grantElectionLease,
  installControllerPrereqs,
  revokeElectionLease,
  startController,
  type RunningController,
} from '../integration/controller-harness.js';
import {
  installNodeAgentRbac,
  makeBusyboxRootfs,
  nodeBoundIdentity,
  startNodeAgent,
  type NodeAgentDirs,
  type NodeBoundIdentity,
  type RunningNodeAgent,
} from './node-agent-harness.js';
import { ensureImage, sh } from './sandbox-vm.js';
import { phase, qemuPidsOf, removeScratch, SandboxApi, waitForFile } from './sandbox-api.js';

jest.setTimeout(900_000);

const ELECTION_ID = `kata-controller-e2e-warm-${process.pid}`;
const TAG = randomBytes(3).toString('hex');
const NODE = `e2e-warm-${process.pid}`;
const POOL = `e2e-warm-${TAG}`;
const POD_NS = `kwp-pod-${TAG}`;
const OUT_NS = `kwp-out-${TAG}`;
const NODE_NS = `kwp-node-${TAG}`;
const BRIDGE = `kwb${TAG}`;
const GROUP = { group: 'kata.sandbox.io', version: 'v1alpha1', plural: 'katawarmpools' };
const madeNetns: string[] = [];

let base: string;
let dirs: NodeAgentDirs;
let ns = '';
let sandboxes: SandboxApi;
let pools: CustomObjectsApi;
let identity: NodeBoundIdentity | undefined;
let controller: RunningController | undefined;
let agent: RunningNodeAgent | undefined;

const ipIn = (n: string, ...args: string[]): string => sh(['ip', '-n', n, ...args]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function poolEntry(): Promise<{ ready?: number; booting?: number; claimed?: number }> {
  const p = (await pools.getClusterCustomObject({ ...GROUP, name: POOL })) as KataWarmPool;
  return p.status?.nodes?.find((e) => e.node === NODE) ?? {};
}

async function waitForPool(
  what: string,
  pred: (e: { ready?: number; booting?: number; claimed?: number }) => boolean,
  timeoutMs = 300_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = {};
  while (Date.now() < deadline) {
    last = await poolEntry();
    if (pred(last)) return;
    await sleep(1_000);
  }
  throw new Error(
    `pool ${POOL}: not ${what} within ${timeoutMs} ms; last entry ${JSON.stringify(last)}`,
  );
}

/** The warm VMs the node agent keeps now (its records), by uid. */
function warmRecords(): string[] {
  const d = path.join(dirs.stateDir, 'warm');
  return existsSync(d)
    ? readdirSync(d)
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -5))
    : [];
}

function stateOf(uid: string): { warm?: { vmUid: string; pool: string } } {
  return JSON.parse(
    readFileSync(path.join(dirs.stateDir, 'sandboxes', uid, 'state.json'), 'utf8'),
  ) as { warm?: { vmUid: string; pool: string } };
}

/** hack/leak-audit with this node agent's roots; the leftovers as `kind uid` lines. */
function leftovers(liveUids: readonly string[]): string[] {
  let out: string;
  try {
    out = execFileSync(
      path.join(REPO_ROOT, 'hack/leak-audit'),
      [
        ...['--state-dir', dirs.stateDir, '--run-dir', dirs.runDir, '--log-dir', dirs.logDir],
        ...['--output', 'json', '--host-wide', 'known', '--live-uids', liveUids.join(',')],
      ],
      { encoding: 'utf8', timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
    );
  } catch (err) {
    // Exit 1: leftovers, reported on stdout like a clean run.
    const e = err as { status?: number; stdout?: string };
    if (e.status !== 1 || !e.stdout) throw err;
    out = e.stdout;
  }
  const report = JSON.parse(out) as AuditReport;
  return report.kinds.flatMap((k) => k.leftovers.map((l) => `${l.kind} ${l.uid}`)).sort();
}

async function fetchIn(n: string, url: string, timeoutMs = 90_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return sh(['ip', 'netns', 'exec', n, 'busybox', 'wget', '-q', '-O', '-', url], 10_000);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(1000);
    }
  }
}

async function startAgent(): Promise<RunningNodeAgent> {
  const a = await startNodeAgent(
    NODE,
    dirs,
    path.join(base, 'node-agent.log'),
    [
      ...['--max-sandboxes', '8', '--memory-mib', '8192'],
      ...['--cni-conf-dir', path.join(base, 'net.d'), '--cni-bin-dirs', '/usr/lib/cni'],
      ...['--cni-node-netns', `/run/netns/${NODE_NS}`],
    ],
    identity,
  );
  await waitForFile(a.logFile, /serving \/metrics/);
  return a;
}

beforeAll(async () => {
  ensureImage();
  await installControllerPrereqs();
  await installNodeAgentRbac();
  await grantElectionLease(ELECTION_ID);
  ns = await freshNamespace('warm-pool');
  const kc = await adminKubeConfig();
  sandboxes = new SandboxApi(kc, ns, NODE);
  pools = kc.makeApiClient(CustomObjectsApi);
  identity = await nodeBoundIdentity(NODE);

  base = mkdtempSync('/tmp/kwp-');
  const roots = path.join(base, 'roots');
  mkdirSync(roots);
  makeBusyboxRootfs(path.join(roots, 'busybox'), ['www']);
  writeFileSync(path.join(roots, 'busybox/www/index.html'), 'hello-from-a-warm-vm\n');
  mkdirSync(path.join(roots, 'vol'));
  writeFileSync(path.join(roots, 'vol/data.txt'), 'VOLUME-MARKER\n');
  // A block rootfs: an ext4 image holding rootfs/ (busybox, /www).
  const tree = path.join(base, 'blk-tree');
  makeBusyboxRootfs(path.join(tree, 'rootfs'), ['www']);
  writeFileSync(path.join(tree, 'rootfs/www/index.html'), 'hello-from-a-plugged-disk\n');
  sh(['truncate', '-s', '48M', path.join(roots, 'blk.img')]);
  sh(['mkfs.ext4', '-q', '-F', '-d', tree, path.join(roots, 'blk.img')]);
  // CNI: Debian's bridge + host-local, the bridge in a "node" namespace of the test's own.
  mkdirSync(path.join(base, 'net.d'));
  writeFileSync(
    path.join(base, 'net.d', '10-warmnet.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'warmnet',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: false,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: '10.207.0.0/24' }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: path.join(base, 'ipam'),
          },
        },
        { type: 'loopback' },
      ],
    }),
  );
  sh(['ip', 'netns', 'add', NODE_NS]);
  madeNetns.push(NODE_NS);
  ipIn(NODE_NS, 'link', 'set', 'lo', 'up');
  dirs = {
    stateDir: path.join(base, 'state'),
    runDir: path.join(base, 'run'),
    logDir: path.join(base, 'logs'),
    roots: [roots],
  };
  controller = await startController(`e2e-warm-${process.pid}`, {
    namespace: ns,
    electionId: ELECTION_ID,
  });
  await pools.createClusterCustomObject({
    ...GROUP,
    body: {
      apiVersion: 'kata.sandbox.io/v1alpha1',
      kind: 'KataWarmPool',
      metadata: { name: POOL },
      spec: { vm: { memoryMiB: 512 }, replicasPerNode: 2 },
    },
  });
  agent = await startAgent();
}, 30 * 60_000);

afterAll(async () => {
  await pools?.deleteClusterCustomObject({ ...GROUP, name: POOL }).catch(() => undefined);
  await agent?.stop('SIGKILL');
  await controller?.stop();
  await revokeElectionLease(ELECTION_ID).catch(() => '');
  await identity?.remove().catch(() => undefined);
  if (base) await removeScratch(base);
  for (const n of [...madeNetns, ...warmNetns].reverse()) {
    try {
      sh(['ip', 'netns', 'del', n]);
    } catch {
      // gone
    }
  }
}, 120_000);

/** Every warm VM netns this run saw, removed at the end if anything was left. */
const warmNetns = new Set<string>();

describe('warm pools (real control plane, real QEMU)', () => {
  const taken: string[] = [];
  const claimedPids: number[] = [];

  it('the node agent boots the pool to 2 ready VMs and says so in the pool status', async () => {
    await waitForPool('2 ready', (e) => e.ready === 2);
    // The controller's Ready condition follows the node's entry.
    const deadline = Date.now() + 60_000;
    let ready: string | undefined;
    while (ready !== 'True' && Date.now() < deadline) {
      const p = (await pools.getClusterCustomObject({ ...GROUP, name: POOL })) as KataWarmPool;
      ready = p.status?.conditions?.find((c) => c.type === 'Ready')?.status;
      if (ready !== 'True') await sleep(500);
    }
    expect(ready).toBe('True');
    const vms = warmRecords();
    expect(vms).toHaveLength(2);
    for (const vm of vms) {
      expect(qemuPidsOf(vm)).toHaveLength(1);
      warmNetns.add(`kata-${vm}`);
    }
  });

  it('two sandboxes created at once both take warm VMs: no boot, volume and netns network work', async () => {
    const ready = warmRecords();
    sh(['ip', 'netns', 'add', POD_NS]);
    madeNetns.push(POD_NS);
    sh(['ip', 'netns', 'add', OUT_NS]);
    madeNetns.push(OUT_NS);
    ipIn(POD_NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0', 'netns', OUT_NS);
    ipIn(POD_NS, 'addr', 'add', '10.206.0.2/24', 'dev', 'eth0');
    ipIn(POD_NS, 'link', 'set', 'eth0', 'up');
    ipIn(POD_NS, 'route', 'add', 'default', 'via', '10.206.0.1');
    ipIn(OUT_NS, 'addr', 'add', '10.206.0.1/24', 'dev', 'peer0');
    ipIn(OUT_NS, 'link', 'set', 'peer0', 'up');
    const roots = dirs.roots[0]!;
    const rootfs = { hostPath: { path: path.join(roots, 'busybox') } };
    await Promise.all([
      sandboxes.create('net', {
        vm: { memoryMiB: 512 },
        network: { mode: 'netns', netnsPath: `/run/netns/${POD_NS}` },
        terminationGracePeriodSeconds: 1,
        containers: [{ name: 'srv', rootfs, command: ['httpd', '-f', '-p', '8080', '-h', '/www'] }],
      }),
      sandboxes.create('vol', {
        vm: { memoryMiB: 512 },
        terminationGracePeriodSeconds: 1,
        volumes: [{ name: 'data', hostPath: { path: path.join(roots, 'vol') } }],
        containers: [
          {
            name: 'c',
            rootfs,
            volumeMounts: [{ name: 'data', mountPath: '/data' }],
            command: ['/bin/sh', '-c', 'cat /data/data.txt; exec sleep 3600'],
          },
        ],
      }),
    ]);
    const net = (await sandboxes.waitFor('net', 'Running', phase('Running')))!;
    const vol = (await sandboxes.waitFor('vol', 'Running', phase('Running')))!;
    for (const sb of [net, vol]) {
      expect(sb.status?.vm).toMatchObject({ warm: true, warmPool: POOL });
      expect(sb.status?.vm?.claimMillis).toBeGreaterThanOrEqual(0);
      const claim = stateOf(sb.metadata.uid!).warm!;
      expect(ready).toContain(claim.vmUid);
      taken.push(claim.vmUid);
      // The very QEMU the pool booted: no second one for the sandbox.
      expect(qemuPidsOf(claim.vmUid)).toHaveLength(1);
      expect(qemuPidsOf(sb.metadata.uid!)).toEqual([]);
      claimedPids.push(qemuPidsOf(claim.vmUid)[0]!);
    }
    expect(new Set(taken).size).toBe(2);
    expect(net.status?.network?.interfaces).toEqual([
      expect.objectContaining({ name: 'eth0', addresses: ['10.206.0.2/24'] }),
    ]);
    expect(await fetchIn(OUT_NS, 'http://10.206.0.2:8080/index.html')).toBe(
      'hello-from-a-warm-vm\n',
    );
    const out = path.join(dirs.logDir, `${ns}_vol_${vol.metadata.uid}`);
    const deadline = Date.now() + 60_000;
    const logText = (): string =>
      existsSync(out)
        ? readdirSync(out, { recursive: true, withFileTypes: true })
            .filter((e) => e.isFile())
            .map((e) => readFileSync(path.join(e.parentPath, e.name), 'utf8'))
            .join('')
        : '';
    while (!logText().includes('VOLUME-MARKER') && Date.now() < deadline) await sleep(500);
    expect(logText()).toContain('VOLUME-MARKER');
  });

  it('the pool refills to 2 with new VMs, and reports the 2 claimed', async () => {
    await waitForPool('refilled', (e) => e.ready === 2 && e.claimed === 2);
    const now = warmRecords();
    expect(now).toHaveLength(2);
    for (const vm of now) {
      expect(taken).not.toContain(vm);
      warmNetns.add(`kata-${vm}`);
    }
  });

  it('kill -9 of the node agent: warm and claimed VMs adopted, none booted again', async () => {
    const warmBefore = warmRecords().sort();
    const warmPids = warmBefore.map((vm) => qemuPidsOf(vm)[0]);
    const recoveries = (): number =>
      (readFileSync(agent!.logFile, 'utf8').match(/recovered warm VMs of previous runs/g) ?? [])
        .length;
    const before = recoveries();
    await agent!.stop('SIGKILL');
    agent = await startAgent();
    const deadline = Date.now() + 120_000;
    while (recoveries() === before && Date.now() < deadline) await sleep(300);
    const line = readFileSync(agent.logFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes('recovered warm VMs of previous runs'))
      .at(-1);
    // Each warm VM of the previous agent was adopted, none destroyed.
    for (const vm of warmBefore) expect(line).toContain(`"${vm}":"adopted"`);
    expect(warmRecords().sort()).toEqual(warmBefore);
    expect(warmBefore.map((vm) => qemuPidsOf(vm)[0])).toEqual(warmPids);
    expect(taken.map((vm) => qemuPidsOf(vm)[0])).toEqual(claimedPids);
    for (const name of ['net', 'vol']) {
      expect((await sandboxes.get(name))?.status?.phase).toBe('Running');
    }
    expect(await fetchIn(OUT_NS, 'http://10.206.0.2:8080/index.html')).toBe(
      'hello-from-a-warm-vm\n',
    );
    await waitForPool('still 2 ready after the restart', (e) => e.ready === 2, 60_000);
    // Nothing leaked: the warm VMs' and the taken VMs' host objects are all owned.
    const live = [];
    for (const name of ['net', 'vol']) live.push((await sandboxes.get(name))!.metadata.uid!);
    expect(leftovers(live)).toEqual([]);
  });

  it('a claimed VM is destroyed with its sandbox, never returned to the pool', async () => {
    const warmBefore = warmRecords().sort();
    await sandboxes.delete('vol');
    await sandboxes.waitFor('vol', 'deleted', (sb) => sb === undefined, 120_000);
    expect(qemuPidsOf(taken[1]!)).toEqual([]);
    expect(warmRecords().sort()).toEqual(warmBefore);
    expect(warmRecords()).not.toContain(taken[1]);
    expect(existsSync(`/run/netns/kata-${taken[1]}`)).toBe(false);
  });

  it('a block rootfs is hot-plugged and a CNI network attached to a taken VM; no ready VM → cold at once', async () => {
    await waitForPool('2 ready again', (e) => e.ready === 2, 300_000);
    const ready = warmRecords();
    const roots = dirs.roots[0]!;
    await sandboxes.create('blk', {
      vm: { memoryMiB: 512 },
      network: { mode: 'cni' },
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'web',
          rootfs: { block: { path: path.join(roots, 'blk.img'), fsType: 'ext4' } },
          command: ['httpd', '-f', '-p', '8080', '-h', '/www'],
        },
      ],
    });
    await sandboxes.create('other', {
      vm: { memoryMiB: 512 },
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'c',
          rootfs: { hostPath: { path: path.join(roots, 'busybox') } },
          command: ['sleep', '3600'],
        },
      ],
    });
    const blk = (await sandboxes.waitFor('blk', 'Running', phase('Running')))!;
    const other = (await sandboxes.waitFor('other', 'Running', phase('Running')))!;
    for (const sb of [blk, other]) {
      expect(sb.status?.vm?.warm).toBe(true);
      const vmUid = stateOf(sb.metadata.uid!).warm!.vmUid;
      expect(ready).toContain(vmUid);
      taken.push(vmUid);
    }
    // Both warm VMs are taken and a refill takes far longer than this: this one boots cold at
    // once, and says why.
    await sandboxes.create('cold', {
      vm: { memoryMiB: 512 },
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'c',
          rootfs: { hostPath: { path: path.join(roots, 'busybox') } },
          command: ['sleep', '3600'],
        },
      ],
    });
    const ip = blk.status!.network!.interfaces![0]!.addresses![0]!.split('/')[0]!;
    expect(ip).toMatch(/^10\.207\.0\.\d+$/);
    expect(await fetchIn(NODE_NS, `http://${ip}:8080/index.html`)).toBe(
      'hello-from-a-plugged-disk\n',
    );

    const cold = (await sandboxes.waitFor('cold', 'Running', phase('Running')))!;
    expect(cold.status?.vm?.warm).toBeUndefined();
    expect(cold.status?.vm?.warmMiss).toMatch(/no warm VM of shape 1c512m-default-auto was ready/);
    expect(cold.status?.vm?.bootMillis).toBeGreaterThan(0);
    expect(qemuPidsOf(cold.metadata.uid!)).toHaveLength(1);
    for (const name of ['blk', 'other', 'cold']) await sandboxes.delete(name);
    for (const name of ['blk', 'other', 'cold']) {
      await sandboxes.waitFor(name, 'deleted', (sb) => sb === undefined, 120_000);
    }
    for (const vm of taken.slice(2)) {
      expect(qemuPidsOf(vm)).toEqual([]);
      expect(existsSync(`/run/netns/kata-${vm}`)).toBe(false);
    }
    expect(existsSync(path.join(base, 'ipam', 'warmnet'))).toBe(true);
    expect(readdirSync(path.join(base, 'ipam', 'warmnet')).filter((f) => /^\d+\./.test(f))).toEqual(
      [],
    );
  });

  it('deleting the pool stops its warm VMs; the claimed one keeps running', async () => {
    const warm = warmRecords();
    await pools.deleteClusterCustomObject({ ...GROUP, name: POOL });
    const deadline = Date.now() + 120_000;
    while (warmRecords().length > 0 && Date.now() < deadline) await sleep(1_000);
    expect(warmRecords()).toEqual([]);
    for (const vm of warm) {
      expect(qemuPidsOf(vm)).toEqual([]);
      expect(existsSync(`/run/netns/kata-${vm}`)).toBe(false);
    }
    expect(qemuPidsOf(taken[0]!)).toEqual([claimedPids[0]]);
    expect((await sandboxes.get('net'))?.status?.phase).toBe('Running');
    await sandboxes.delete('net');
    await sandboxes.waitFor('net', 'deleted', (sb) => sb === undefined, 120_000);
    expect(qemuPidsOf(taken[0]!)).toEqual([]);
    expect(existsSync(`/run/netns/kata-${taken[0]}`)).toBe(false);
    expect(readdirSync(path.join(dirs.runDir, 'sandboxes'))).toEqual([]);
    expect(leftovers([])).toEqual([]);
  });
});

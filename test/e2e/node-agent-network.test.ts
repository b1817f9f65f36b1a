// The node agent's network and block steps end to end: real control plane, the controller and
// node agent as processes with their own identities, real QEMU. Every namespace and address is
// made here (a "node" namespace where the CNI bridge lives, a pod namespace with a veth to an
// "outside" one), nothing in the machine's own namespace.
//  "web": mode cni (Debian's bridge + host-local + loopback run from the node namespace), an ext4
//    block rootfs, and an image file as a container device; reached across the bridge.
//  "pod": mode netns in a namespace the test made; reached from the veth's outside peer.
//  "badns": a namespace path outside the allowed roots → Failed before anything is made.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { KataSandbox } from '../../src/crds/index.js';
import { adminKubeConfig, freshNamespace } from '../integration/cluster.js';
import {
  grantElectionLease,
  revokeElectionLease,
  installControllerPrereqs,
  startController,
  type RunningController,
} from '../integration/controller-harness.js';
import {
  installNodeAgentRbac,
  makeBusyboxRootfs,
  startNodeAgent,
  type NodeAgentDirs,
  type RunningNodeAgent,
} from './node-agent-harness.js';
import { ensureImage, sh } from './sandbox-vm.js';
import { phase, qemuPidsOf, removeScratch, SandboxApi, waitForFile } from './sandbox-api.js';
import { sampleValue } from '../integration/metrics-harness.js';

jest.setTimeout(600_000);

/** This run's own controller election (the shared control plane may run other controllers). */
const ELECTION_ID = `kata-controller-e2e-net-${process.pid}`;

const TAG = randomBytes(3).toString('hex');
const NODE = `e2e-net-${process.pid}`;
const NODE_NS = `kna-node-${TAG}`;
const POD_NS = `kna-pod-${TAG}`;
const OUT_NS = `kna-out-${TAG}`;
const BRIDGE = `kbr${TAG}`;
const madeNetns: string[] = [];
let ns = '';
let metricsPort = 0;

let base: string;
let dirs: NodeAgentDirs;
let ipamDir: string;
let loopDev = '';
let devRoot = '';
let sandboxes: SandboxApi;
let controller: RunningController | undefined;
let agent: RunningNodeAgent | undefined;

const ipIn = (ns: string, ...args: string[]): string => sh(['ip', '-n', ns, ...args]);
const netnsAdd = (name: string): void => {
  sh(['ip', 'netns', 'add', name]);
  madeNetns.push(name);
  ipIn(name, 'link', 'set', 'lo', 'up');
};

/** Fetches a URL from inside a namespace, retrying while the server in the guest starts. */
async function fetchIn(ns: string, url: string, timeoutMs = 90_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return sh(['ip', 'netns', 'exec', ns, 'busybox', 'wget', '-q', '-O', '-', url], 10_000);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

const allocations = (): string[] => {
  const d = path.join(ipamDir, 'katanet');
  return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
};

beforeAll(async () => {
  ensureImage();
  await installControllerPrereqs();
  await installNodeAgentRbac();
  await grantElectionLease(ELECTION_ID);
  ns = await freshNamespace('node-agent-net');
  sandboxes = new SandboxApi(await adminKubeConfig(), ns, NODE);

  base = mkdtempSync('/tmp/kna-net-');
  const roots = path.join(base, 'roots');
  ipamDir = path.join(base, 'ipam');
  const confDir = path.join(base, 'net.d');
  mkdirSync(confDir, { recursive: true });
  writeFileSync(
    path.join(confDir, '10-katanet.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'katanet',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: false,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: '10.204.0.0/24' }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: ipamDir,
          },
        },
        { type: 'loopback' },
      ],
    }),
  );
  netnsAdd(NODE_NS);

  // web's rootfs: an ext4 image holding rootfs/ (busybox, /www); its device: a file with a marker.
  const tree = path.join(base, 'web-tree');
  makeBusyboxRootfs(path.join(tree, 'rootfs'), ['www']);
  writeFileSync(path.join(tree, 'rootfs/www/index.html'), 'hello-from-block-rootfs\n');
  mkdirSync(roots);
  sh(['truncate', '-s', '48M', path.join(roots, 'web.img')]);
  sh(['mkfs.ext4', '-q', '-F', '-d', tree, path.join(roots, 'web.img')]);
  sh(['truncate', '-s', '1M', path.join(roots, 'data.img')]);
  writeFileSync(path.join(base, 'marker'), 'DEVICE-MARKER');
  sh([
    'dd',
    `if=${path.join(base, 'marker')}`,
    `of=${path.join(roots, 'data.img')}`,
    'conv=notrunc',
    'status=none',
  ]);
  // Devices are block devices beneath the device roots only: data.img behind a loop device, whose
  // node this test makes in a device root of its own.
  loopDev = execFileSync('losetup', ['--find', '--show', path.join(roots, 'data.img')], {
    encoding: 'utf8',
    timeout: 10_000,
  }).trim();
  const [major, minor] = execFileSync('stat', ['-L', '-c', '%t %T', loopDev], { encoding: 'utf8' })
    .trim()
    .split(' ')
    .map((h) => String(parseInt(h, 16)));
  devRoot = path.join(base, 'devs');
  mkdirSync(devRoot);
  sh(['mknod', path.join(devRoot, 'data'), 'b', major ?? '', minor ?? '']);
  // pod's rootfs: a directory over 9p.
  makeBusyboxRootfs(path.join(roots, 'busybox'), ['www']);
  writeFileSync(path.join(roots, 'busybox/www/index.html'), 'hello-from-netns\n');

  dirs = {
    stateDir: path.join(base, 'state'),
    runDir: path.join(base, 'run'),
    logDir: path.join(base, 'logs'),
    roots: [roots],
  };
  controller = await startController(`e2e-node-agent-net-${process.pid}`, {
    namespace: ns,
    electionId: ELECTION_ID,
  });
  agent = await startNodeAgent(NODE, dirs, path.join(base, 'node-agent.log'), [
    '--cni-conf-dir',
    confDir,
    '--cni-bin-dirs',
    '/usr/lib/cni',
    '--cni-node-netns',
    `/run/netns/${NODE_NS}`,
    '--allowed-device-roots',
    devRoot,
    ...['--guest-stats-ms', '2000'],
  ]);
  const served = await waitForFile(agent.logFile, /"port":(\d+)[^\n]*serving \/metrics/);
  metricsPort = Number(/"port":(\d+)[^\n]*serving \/metrics/.exec(served)![1]);
}, 30 * 60_000);

afterAll(async () => {
  await agent?.stop('SIGKILL');
  await controller?.stop();
  await revokeElectionLease(ELECTION_ID).catch(() => '');
  if (base) await removeScratch(base);
  if (loopDev) execFileSync('losetup', ['-d', loopDev], { timeout: 10_000 });
  for (const n of madeNetns.reverse()) {
    try {
      sh(['ip', 'netns', 'del', n]);
    } catch {
      // gone
    }
  }
}, 120_000);

describe('kata-node-agent network and block steps (real control plane, real QEMU)', () => {
  let web: KataSandbox;
  let pod: KataSandbox;

  it('cni + block rootfs + device, and netns mode: both Running, reachable, status.network from the guest', async () => {
    // pod's namespace: eth0 (10.205.0.2/24, default via .1) with its peer in the outside namespace.
    netnsAdd(POD_NS);
    netnsAdd(OUT_NS);
    ipIn(POD_NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0', 'netns', OUT_NS);
    ipIn(POD_NS, 'addr', 'add', '10.205.0.2/24', 'dev', 'eth0');
    ipIn(POD_NS, 'link', 'set', 'eth0', 'up');
    ipIn(POD_NS, 'route', 'add', 'default', 'via', '10.205.0.1');
    ipIn(OUT_NS, 'addr', 'add', '10.205.0.1/24', 'dev', 'peer0');
    ipIn(OUT_NS, 'link', 'set', 'peer0', 'up');

    const roots = dirs.roots[0]!;
    await sandboxes.create('web', {
      network: { mode: 'cni' },
      terminationGracePeriodSeconds: 2,
      containers: [
        {
          name: 'web',
          rootfs: { block: { path: path.join(roots, 'web.img'), fsType: 'ext4' } },
          devices: [{ hostPath: path.join(devRoot, 'data'), containerPath: '/dev/xdata' }],
          command: [
            '/bin/sh',
            '-c',
            'head -c 13 /dev/xdata > /www/dev.txt; echo >> /www/dev.txt; exec httpd -f -p 8080 -h /www',
          ],
        },
      ],
    });
    await sandboxes.create('pod', {
      network: { mode: 'netns', netnsPath: `/run/netns/${POD_NS}` },
      terminationGracePeriodSeconds: 2,
      dns: { nameservers: ['10.96.0.10'], searches: ['svc.cluster.local'] },
      containers: [
        {
          name: 'srv',
          rootfs: { hostPath: { path: path.join(roots, 'busybox') } },
          command: [
            '/bin/sh',
            '-c',
            'cat /etc/resolv.conf > /www/resolv.txt; exec httpd -f -p 8080 -h /www',
          ],
        },
      ],
    });
    web = (await sandboxes.waitFor('web', 'Running', phase('Running')))!;
    pod = (await sandboxes.waitFor('pod', 'Running', phase('Running')))!;

    // web: the address CNI gave it, on the bridge in the node namespace.
    const eth0 = web.status!.network!.interfaces!.find((i) => i.name === 'eth0');
    expect(eth0?.addresses?.[0]).toMatch(/^10\.204\.0\.\d+\/24$/);
    expect(web.status!.network!.routes).toContainEqual({
      dest: 'default',
      gateway: '10.204.0.1',
      device: 'eth0',
    });
    expect(web.status!.conditions?.find((c) => c.type === 'NetworkReady')?.status).toBe('True');
    const ip = eth0!.addresses![0]!.split('/')[0]!;
    expect(await fetchIn(NODE_NS, `http://${ip}:8080/index.html`)).toBe(
      'hello-from-block-rootfs\n',
    );
    expect(await fetchIn(NODE_NS, `http://${ip}:8080/dev.txt`)).toBe('DEVICE-MARKER\n');
    expect(allocations()).toHaveLength(1);

    // pod: exactly the namespace's address and routes; reached from the outside peer.
    expect(pod.status!.network!.interfaces).toEqual([
      expect.objectContaining({ name: 'eth0', addresses: ['10.205.0.2/24'] }),
    ]);
    expect(pod.status!.network!.routes).toContainEqual({
      dest: 'default',
      gateway: '10.205.0.1',
      device: 'eth0',
    });
    expect(await fetchIn(OUT_NS, 'http://10.205.0.2:8080/index.html')).toBe('hello-from-netns\n');
    const resolv = await fetchIn(OUT_NS, 'http://10.205.0.2:8080/resolv.txt');
    expect(resolv).toContain('nameserver 10.96.0.10');
    expect(resolv).toContain('search svc.cluster.local');
    // QEMU runs inside the pod namespace: its tap is there, not in ours.
    expect(ipIn(POD_NS, '-o', 'link', 'show', 'type', 'tun')).toMatch(/_kata/);
  });

  it("the node agent's per-sandbox guest series: web's eth0 carried the HTTP replies", async () => {
    const own = `namespace="${ns}",name="web",node="${NODE}"`;
    const eth0 = `${own},interface="eth0"`;
    const figures = async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return {
        rx: sampleValue(text, 'kata_node_sandbox_network_receive_bytes_total', eth0),
        tx: sampleValue(text, 'kata_node_sandbox_network_transmit_bytes_total', eth0),
        cpu: sampleValue(
          text,
          'kata_node_sandbox_container_cpu_seconds_total',
          `${own},container="web"`,
        ),
        memory: sampleValue(text, 'kata_node_sandbox_guest_memory_total_bytes', own),
      };
    };
    let got = await figures();
    for (let i = 0; i < 60 && (got.tx ?? 0) <= 0; i++) {
      await new Promise((r) => setTimeout(r, 1_000));
      got = await figures();
    }
    // httpd sent two pages out of eth0 and received the requests.
    expect(got.tx).toBeGreaterThan(0);
    expect(got.rx).toBeGreaterThan(0);
    expect(got.cpu).toBeGreaterThan(0);
    expect(got.memory).toBeGreaterThan(0);
  });

  it('a namespace path outside the allowed roots → Failed/InvalidNetworkNamespace, nothing made', async () => {
    const outside = path.join(base, 'not-a-root-ns');
    writeFileSync(outside, '');
    const sb = await sandboxes.create('badns', {
      network: { mode: 'netns', netnsPath: outside },
      containers: [
        { name: 'c', rootfs: { hostPath: { path: path.join(dirs.roots[0]!, 'busybox') } } },
      ],
    });
    const failed = await sandboxes.waitFor('badns', 'Failed', phase('Failed'), 60_000);
    expect(failed!.status!.reason).toBe('InvalidNetworkNamespace');
    expect(failed!.status!.message).toContain('spec.network.netnsPath');
    expect(qemuPidsOf(sb.metadata.uid!)).toEqual([]);
    expect(existsSync(path.join(dirs.runDir, 'shared', sb.metadata.uid!))).toBe(false);
    expect(await sandboxes.eventCount('badns', 'InvalidNetworkNamespace')).toBeGreaterThan(0);
  });

  it('delete: no QEMU, tap, CNI namespace, bridge port or address allocation is left', async () => {
    for (const name of ['web', 'pod', 'badns']) await sandboxes.delete(name);
    for (const name of ['web', 'pod', 'badns']) {
      await sandboxes.waitFor(name, 'deleted', (sb) => sb === undefined, 120_000);
    }
    for (const sb of [web, pod]) {
      const uid = sb.metadata.uid!;
      expect(qemuPidsOf(uid)).toEqual([]);
      expect(existsSync(path.join(dirs.stateDir, 'sandboxes', uid))).toBe(false);
    }
    expect(existsSync(`/run/netns/kata-${web.metadata.uid}`)).toBe(false);
    expect(ipIn(NODE_NS, '-o', 'link', 'show', 'master', BRIDGE).trim()).toBe('');
    expect(allocations()).toEqual([]);
    // The user's namespace stays (not ours), without our tap and redirect.
    expect(ipIn(POD_NS, '-o', 'link', 'show', 'type', 'tun').trim()).toBe('');
    expect(ipIn(POD_NS, '-o', 'link', 'show', 'eth0')).toMatch(/eth0/);
  });
});

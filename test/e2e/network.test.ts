// Networking into real VMs (TCG), Kata's tcfilter model. Every namespace here is made by this test
// (addresses only inside them; nothing in the machine's own namespace), and afterAll removes them
// all, even after a failure.
//  netns mode: a pod namespace with a veth (peer in an "outside" namespace), an IPv4 address and a
//    default route, plus a second, IPv6-only veth; the sandbox boots inside it; from the outside
//    peer a TCP connection reaches busybox httpd in the container; the guest's routes match.
//  cni mode: a "node namespace" made by the test runs Debian's bridge + host-local + loopback;
//    two sandboxes reach each other across the bridge; after destroy nothing is left.
//  bad input: missing / outside / /proc paths, a failing CNI plugin (its message, DEL cleans).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CniNetwork, type CniAttachment } from '../../src/node-agent/network/cni.js';
import {
  guestNetworkConfig,
  type GuestNetworkConfig,
} from '../../src/node-agent/network/guest-network-config.js';
import { checkNetnsPath } from '../../src/node-agent/network/netns-path.js';
import { readNetns } from '../../src/node-agent/network/netns-reader.js';
import {
  attach,
  detach,
  netnsLaunchPrefix,
  nicsFor,
  type TapEndpoint,
} from '../../src/node-agent/network/tcfilter.js';
import {
  bootTestVm,
  busyboxRootfs,
  containerRequest,
  ensureImage,
  runContainer,
  sh,
  trySh,
  vmConfig,
  type TestVm,
} from './sandbox-vm.js';

const TAG = randomBytes(3).toString('hex');
const POD_NS = `kt-pod-${TAG}`;
const OUT_NS = `kt-out-${TAG}`;
const NODE_NS = `kt-node-${TAG}`;
const FAIL_NODE_NS = `kt-fnode-${TAG}`;
const madeNetns: string[] = [];
const vms: TestVm[] = [];
const taps: { ns: string; eps: TapEndpoint[] }[] = [];
const cniAttachments: CniAttachment[] = [];
let scratch: string;
let image: { kernel: string; initrd: string };
let cni: CniNetwork;
let ipamDir: string;

const ipIn = (ns: string, ...args: string[]): string => sh(['ip', '-n', ns, ...args]);
const netnsAdd = (name: string): void => {
  sh(['ip', 'netns', 'add', name]);
  madeNetns.push(name);
  ipIn(name, 'link', 'set', 'lo', 'up');
};

/** Each sandbox's containers run from a small ext4 block rootfs (busybox + /www). */
function rootfsImage(name: string): string {
  const tree = path.join(scratch, `${name}-tree`);
  const root = busyboxRootfs(path.join(tree, 'rootfs'));
  mkdirSync(path.join(root, 'www'));
  writeFileSync(path.join(root, 'www', 'index.html'), `hello-from-${name}\n`);
  const img = path.join(scratch, `${name}.img`);
  sh(['truncate', '-s', '32M', img]);
  sh(['mkfs.ext4', '-q', '-F', '-d', tree, img]);
  return img;
}

interface Sandbox {
  vm: TestVm;
  cfg: GuestNetworkConfig;
  cid: string;
}

/** The node agent's steps 3 + 5 for one sandbox: read the namespace, taps, boot inside it,
 * interfaces, routes, CreateSandbox, then a container running `script` on a block rootfs. */
async function startSandbox(name: string, nsPath: string, script: string): Promise<Sandbox> {
  const real = checkNetnsPath(nsPath);
  const desc = await readNetns(real);
  const cfg = guestNetworkConfig(desc);
  const eps = await attach(
    real,
    cfg.interfaces.map((i) => ({ name: i.name, hwAddr: i.hwAddr, mtu: i.mtu })),
    `e2e-${name}`,
  );
  taps.push({ ns: real, eps });
  const img = rootfsImage(name);
  const dir = path.join(scratch, `vm-${name}`);
  const cid = `c-${name}`;
  const vm = await bootTestVm(
    vmConfig(dir, `e2e-${name}`, image, {
      nics: nicsFor(eps),
      drives: [{ path: img, serialId: cid }],
    }),
    dir,
    { launchPrefix: netnsLaunchPrefix(real) },
  );
  vms.push(vm);
  console.log(`${name}: booted in ${vm.bootMillis} ms; warnings ${JSON.stringify(cfg.warnings)}`);
  for (const i of cfg.interfaces) await vm.client.updateInterface(i, { timeoutMs: 30_000 });
  await vm.client.updateRoutes(cfg.routes, { timeoutMs: 30_000 });
  await vm.client.createSandbox(
    {
      sandboxId: name,
      hostname: name,
      dns: { nameservers: ['10.96.0.10'], searches: ['svc.cluster.local'] },
      storages: [],
    },
    { timeoutMs: 60_000 },
  );
  const req = containerRequest(cid, script, {
    storages: [
      {
        driver: 'blk',
        driverOptions: [`serial=${cid}`],
        source: '/dev/vda',
        fstype: 'ext4',
        options: [],
        mountPoint: `/run/kata-containers/shared/containers/${cid}`,
      },
    ],
  });
  await vm.client.createContainer(req, { timeoutMs: 60_000 });
  await vm.client.startContainer(cid, { timeoutMs: 60_000 });
  return { vm, cfg, cid };
}

/** Polls until `fn` succeeds (a server in a just-started container may not listen yet). */
async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await fn();
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  throw last;
}

const HTTPD = 'httpd -f -p 8080 -h /www';
const routeKey = (r: { dest: string; gateway: string; device: string }): string =>
  `${r.dest || 'default'} via ${r.gateway || '-'} dev ${r.device}`;

beforeAll(() => {
  image = ensureImage();
  scratch = mkdtempSync(path.join(tmpdir(), 'network-e2e-'));
}, 20 * 60_000);

afterAll(async () => {
  await Promise.all(vms.map((v) => v.close().catch(() => {})));
  for (const t of taps) await detach(t.ns, t.eps).catch(() => []);
  for (const a of cniAttachments) await cni?.teardown(a).catch(() => {});
  for (const n of madeNetns.reverse()) trySh(['ip', 'netns', 'del', n]);
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 120_000);

describe('netns mode (real VM)', () => {
  it('boots inside the namespace; the peer reaches httpd in the container; routes match; IPv6-only interface warned', async () => {
    netnsAdd(POD_NS);
    netnsAdd(OUT_NS);
    ipIn(POD_NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0', 'netns', OUT_NS);
    ipIn(POD_NS, 'addr', 'add', '10.201.0.2/24', 'dev', 'eth0');
    ipIn(POD_NS, 'link', 'set', 'eth0', 'up');
    ipIn(POD_NS, 'route', 'add', 'default', 'via', '10.201.0.1', 'dev', 'eth0');
    ipIn(POD_NS, 'route', 'add', '10.250.0.0/16', 'via', '10.201.0.1', 'dev', 'eth0');
    ipIn(OUT_NS, 'addr', 'add', '10.201.0.1/24', 'dev', 'peer0');
    ipIn(OUT_NS, 'link', 'set', 'peer0', 'up');
    // An IPv6-only interface: its addresses are skipped with a warning, the sandbox still boots.
    ipIn(POD_NS, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'peer1', 'netns', OUT_NS);
    ipIn(POD_NS, 'addr', 'add', 'fd00:201::2/64', 'dev', 'eth1', 'nodad');
    ipIn(POD_NS, 'link', 'set', 'eth1', 'up');
    ipIn(OUT_NS, 'link', 'set', 'peer1', 'up');

    const sb = await startSandbox('pod', `/run/netns/${POD_NS}`, HTTPD);
    expect(sb.cfg.warnings).toEqual([
      expect.objectContaining({ interface: 'eth1', address: 'fd00:201::2/64' }),
    ]);
    // Taps in the pod namespace, none in the outside one.
    expect(ipIn(POD_NS, '-o', 'link', 'show', 'type', 'tun')).toMatch(/tap0_kata/);

    let body: string;
    try {
      body = await eventually(() =>
        sh(
          [
            'ip',
            'netns',
            'exec',
            OUT_NS,
            // busybox's static wget crashes on this host; curl is in the setup packages.
            'curl',
            '-sS',
            '--max-time',
            '5',
            'http://10.201.0.2:8080/index.html',
          ],
          15_000,
        ),
      );
    } catch (e) {
      const diag = (argv: string[]): string => {
        try {
          return sh(argv, 15_000);
        } catch (err) {
          return `${argv.join(' ')}: ${(err as Error).message}`;
        }
      };
      console.log(
        [
          diag([
            'ip',
            'netns',
            'exec',
            OUT_NS,
            'busybox',
            'ping',
            '-c',
            '2',
            '-W',
            '2',
            '10.201.0.2',
          ]),
          diag(['ip', '-n', POD_NS, '-s', 'link', 'show']),
          diag(['tc', '-n', POD_NS, '-s', 'filter', 'show', 'dev', 'eth0', 'ingress']),
          JSON.stringify(await sb.vm.client.listInterfaces()),
          JSON.stringify(await sb.vm.client.listRoutes()),
          (await sb.vm.process.consoleTail(30)).join('\n'),
        ].join('\n'),
      );
      throw e;
    }
    expect(body).toBe('hello-from-pod\n');

    const guestIfs = await sb.vm.client.listInterfaces();
    const eth0 = guestIfs.find((i) => i.name === 'eth0');
    const eth1 = guestIfs.find((i) => i.name === 'eth1');
    expect(eth0?.IPAddresses.map((a) => `${a.address}/${a.mask}`)).toEqual(['10.201.0.2/24']);
    expect(eth0?.hwAddr).toBe(sb.cfg.interfaces[0]!.hwAddr);
    expect(eth1?.IPAddresses).toEqual([]);

    const guestRoutes = (await sb.vm.client.listRoutes()).map(routeKey).sort();
    const nsRoutes = sb.cfg.routes.map(routeKey).sort();
    expect(guestRoutes).toEqual(nsRoutes);
    expect(nsRoutes).toEqual(
      expect.arrayContaining([
        'default via 10.201.0.1 dev eth0',
        '10.250.0.0/16 via 10.201.0.1 dev eth0',
      ]),
    );
  }, 300_000);
});

const conflist = (confDir: string, plugins: unknown[]): void => {
  mkdirSync(confDir, { recursive: true });
  writeFileSync(
    path.join(confDir, '10-katatest.conflist'),
    JSON.stringify({ cniVersion: '1.0.0', name: 'katatest', plugins }),
  );
};
const bridgePlugin = (): unknown => ({
  type: 'bridge',
  bridge: 'kbr0',
  isGateway: true,
  ipMasq: false,
  ipam: {
    type: 'host-local',
    ranges: [[{ subnet: '10.202.0.0/24' }]],
    routes: [{ dst: '0.0.0.0/0' }],
    dataDir: ipamDir,
  },
});
const allocations = (): string[] =>
  existsSync(path.join(ipamDir, 'katatest'))
    ? readdirSync(path.join(ipamDir, 'katatest')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
    : [];
const bridgePorts = (ns = NODE_NS): string => ipIn(ns, '-o', 'link', 'show', 'master', 'kbr0');

describe('cni mode (real VMs)', () => {
  it('two sandboxes reach each other across the bridge; destroy leaves nothing', async () => {
    netnsAdd(NODE_NS);
    ipamDir = path.join(scratch, 'ipam');
    const confDir = path.join(scratch, 'net.d');
    conflist(confDir, [bridgePlugin(), { type: 'loopback' }]);
    cni = new CniNetwork({
      confDir,
      binDirs: ['/usr/lib/cni'],
      nodeNetns: `/run/netns/${NODE_NS}`,
    });

    const uids = [`e2ea${TAG}`, `e2eb${TAG}`];
    const atts: CniAttachment[] = [];
    for (const uid of uids) {
      const a = await cni.setup(uid);
      cniAttachments.push(a);
      atts.push(a);
    }
    const ipOf = (a: CniAttachment): string => a.result.ips![0]!.address.split('/')[0]!;
    expect(atts.map(ipOf)).toEqual([
      expect.stringMatching(/^10\.202\.0\./),
      expect.stringMatching(/^10\.202\.0\./),
    ]);
    expect(allocations()).toHaveLength(2);
    await cni.check(atts[0]!);

    const [, sa] = await Promise.all([
      startSandbox('cnib', atts[1]!.netnsPath, HTTPD),
      startSandbox('cnia', atts[0]!.netnsPath, 'sleep 600'),
    ]);
    const a = sa.vm;
    // From sandbox A's VM, fetch from sandbox B's container: a second container in A.
    const fetchCid = 'fetch';
    const fetched = await eventually(async () => {
      const id = `${fetchCid}-${randomBytes(2).toString('hex')}`;
      const req = containerRequest(
        id,
        `printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${ipOf(atts[1]!)} 8080`,
        {
          storages: [
            {
              driver: 'blk',
              driverOptions: ['serial=c-cnia'],
              source: '/dev/vda',
              fstype: 'ext4',
              options: [],
              mountPoint: '/run/kata-containers/shared/containers/c-cnia',
            },
          ],
        },
      );
      req.oci.Root = {
        Path: '/run/kata-containers/shared/containers/c-cnia/rootfs',
        Readonly: false,
      };
      const r = await runContainer(a.client, req);
      await a.client.removeContainer(id, 5).catch(() => {});
      if (!r.stdout.includes('200 OK'))
        throw new Error(`nc exited ${r.status}: ${r.stdout} ${r.stderr}`);
      return r.stdout.slice(r.stdout.indexOf('\r\n\r\n') + 4);
    }, 90_000);
    expect(fetched).toBe('hello-from-cnib\n');

    // Destroy: VMs, taps, then CNI DEL + namespace.
    for (const v of vms.splice(vms.length - 2)) await v.close();
    for (const t of taps.splice(taps.length - 2)) expect(await detach(t.ns, t.eps)).toEqual([]);
    for (const at of cniAttachments.splice(0)) await cni.teardown(at);
    for (const at of atts) expect(existsSync(at.netnsPath)).toBe(false);
    expect(bridgePorts().trim()).toBe('');
    expect(ipIn(NODE_NS, '-o', 'link', 'show', 'type', 'veth').trim()).toBe('');
    expect(allocations()).toEqual([]);
  }, 480_000);
});

describe('bad input', () => {
  it('missing, /proc and outside-root namespace paths: a clear error naming spec.network.netnsPath, nothing created', () => {
    const before = readdirSync('/run/netns').sort();
    const outside = path.join(scratch, 'not-a-netns');
    writeFileSync(outside, '');
    for (const [p, why] of [
      [`/run/netns/kt-missing-${TAG}`, /does not exist/],
      ['/proc/1/ns/net', /under \/proc/],
      [outside, /outside the allowed namespace roots/],
    ] as const) {
      expect(() => checkNetnsPath(p)).toThrow(/^spec\.network\.netnsPath: /);
      expect(() => checkNetnsPath(p)).toThrow(why);
      expect(() => checkNetnsPath(p)).toThrow(p);
    }
    expect(readdirSync('/run/netns').sort()).toEqual(before);
  });

  it('a failing CNI plugin: its message reaches the caller, DEL cleans what ADD made', async () => {
    netnsAdd(FAIL_NODE_NS);
    ipamDir = path.join(scratch, 'ipam-fail');
    const bin = path.join(scratch, 'cni-bin');
    mkdirSync(bin, { recursive: true });
    const failing = path.join(bin, 'quota');
    writeFileSync(
      failing,
      `#!/bin/sh
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","code":101,"msg":"pod network quota exceeded","details":"node limit 0"}'
  exit 1
fi
exit 0
`,
    );
    chmodSync(failing, 0o755);
    const confDir = path.join(scratch, 'net.d-fail');
    conflist(confDir, [bridgePlugin(), { type: 'quota' }]);
    const net = new CniNetwork({
      confDir,
      binDirs: [bin, '/usr/lib/cni'],
      nodeNetns: `/run/netns/${FAIL_NODE_NS}`,
    });
    const uid = `e2ef${TAG}`;
    await expect(net.setup(uid)).rejects.toThrow(
      'CNI plugin quota ADD failed (code 101): pod network quota exceeded (node limit 0)',
    );
    expect(existsSync(net.netnsPath(uid))).toBe(false);
    expect(allocations()).toEqual([]);
    expect(bridgePorts(FAIL_NODE_NS).trim()).toBe('');
  }, 120_000);
});

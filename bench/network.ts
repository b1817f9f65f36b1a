// Benchmark: networking into the VM on the real stack (Kata's tcfilter model, QEMU under TCG, the
// guest image from `make guest`, the guest agent). `make bench` bundles this file with esbuild and
// runs it with node from the repo root.
//   node network.mjs [runs=5] [exchanges=1000]
// Per run: a fresh pod namespace with a veth (its peer in a second namespace made here; addresses
// only inside these two namespaces, nothing in the machine's own), as a CNI would leave it. From
// that moment ("namespace ready") the node agent's steps run: read the namespace, taps + tc
// redirects, QEMU inside the namespace, UpdateInterface/UpdateRoutes, CreateSandbox, a container
// running a busybox `nc` echo server; meanwhile a prober in the peer namespace retries a TCP
// connect to it. "Guest reachable" is the prober's first successful connect. On the last run's VM,
// a client in the peer namespace then does sequential small request/response exchanges over one
// TCP connection (the container echoes with `nc -ll -e cat`) and the round trips give p50/p99.
// VMs boot one at a time (1 vCPU, 512 MiB). Namespaces, taps and VMs are removed after each run,
// after a failure, and on SIGINT/SIGTERM.
//
// The peer side runs as this same file re-executed by `ip netns exec <peer> node <this file>
// --peer-probe|--peer-rtt …` (node cannot enter a namespace itself).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { cpus, homedir, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { guestNetworkConfig } from '../src/node-agent/network/guest-network-config.js';
import { checkNetnsPath } from '../src/node-agent/network/netns-path.js';
import { readNetns } from '../src/node-agent/network/netns-reader.js';
import {
  attach,
  detach,
  netnsLaunchPrefix,
  nicsFor,
  type TapEndpoint,
} from '../src/node-agent/network/tcfilter.js';
import {
  bootTestVm,
  busyboxRootfs,
  containerRequest,
  sh,
  trySh,
  vmConfig,
  type TestVm,
} from '../test/e2e/sandbox-vm.js';

const SELF = fileURLToPath(import.meta.url);
const PORT = 7000;
const POD_IP = '10.204.0.2';
const PEER_IP = '10.204.0.1';
const MESSAGE_BYTES = 32;
const WARMUP = 50;
const IMAGE = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'),
  'kata-sandbox-operator/guest/current',
);

const ms = (n: number): string => `${n.toFixed(0)} ms`;

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

// --- peer side (inside the peer namespace) ---------------------------------------------------

/** One TCP connect attempt; resolves true on connect, false on error or after timeoutMs. */
function tryConnect(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Retries a connect until one succeeds; prints the wall-clock ms of that moment. */
async function peerProbe(host: string, port: number, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    const t = Date.now();
    // Short attempts: while the guest is not up, a SYN goes unanswered (no ARP reply) and the
    // kernel's own retransmit would only come after 1 s.
    if (await tryConnect(host, port, 250)) {
      console.log(`connected ${Date.now()}`);
      return;
    }
    const spent = Date.now() - t;
    if (spent < 50) await new Promise((r) => setTimeout(r, 50 - spent));
  }
  throw new Error(`no TCP connect to ${host}:${port} within ${deadlineMs} ms`);
}

/** Sequential request/response exchanges over one connection; prints the round trips as JSON. */
async function peerRtt(host: string, port: number, n: number, warmup: number): Promise<void> {
  let sock: Socket | undefined;
  for (let attempt = 0; attempt < 50 && !sock; attempt++) {
    sock = await new Promise<Socket | undefined>((resolve) => {
      const s = connect({ host, port });
      s.once('connect', () => resolve(s));
      s.once('error', () => {
        s.destroy();
        resolve(undefined);
      });
    });
    if (!sock) await new Promise((r) => setTimeout(r, 200));
  }
  if (!sock) throw new Error(`cannot connect to ${host}:${port}`);
  const s = sock;
  s.setNoDelay(true);
  let pending: { need: number; resolve: () => void } | undefined;
  let received = 0;
  s.on('data', (b: Buffer) => {
    received += b.length;
    if (pending && received >= pending.need) {
      const p = pending;
      pending = undefined;
      p.resolve();
    }
  });
  const closed = new Promise<never>((_, reject) => {
    s.once('close', () => reject(new Error('echo server closed the connection')));
    s.once('error', reject);
  });
  closed.catch(() => {});
  const msg = Buffer.alloc(MESSAGE_BYTES, 'x');
  const rtts: number[] = [];
  let sent = 0;
  for (let i = 0; i < warmup + n; i++) {
    sent += msg.length;
    const echoed = new Promise<void>((resolve) => {
      pending = { need: sent, resolve };
      if (received >= sent) resolve();
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no echo within 10 s (exchange ${i})`)), 10_000);
    });
    const t0 = performance.now();
    s.write(msg);
    try {
      await Promise.race([echoed, closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
    if (i >= warmup) rtts.push(performance.now() - t0);
  }
  s.destroy();
  console.log(JSON.stringify(rtts));
}

// --- host side -----------------------------------------------------------------------------

/** What a run made, for removal in any case. */
interface RunResources {
  netns: string[];
  taps?: { nsPath: string; eps: TapEndpoint[] };
  vm?: TestVm;
  /** QEMU's pid file: a signal during boot comes before bootTestVm has returned the VM. */
  pidFile?: string;
  children: ChildProcess[];
}
const live = new Set<RunResources>();

async function cleanup(r: RunResources): Promise<void> {
  for (const c of r.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await r.vm?.close().catch((e: unknown) => console.error(`stopping the VM: ${String(e)}`));
  if (r.taps) await detach(r.taps.nsPath, r.taps.eps).catch(() => []);
  for (const n of r.netns.reverse()) trySh(['ip', 'netns', 'del', n]);
  live.delete(r);
}

/** On SIGINT/SIGTERM: kill QEMU and the peers, delete the namespaces (taps and veths go with them). */
function emergencyCleanup(): void {
  for (const r of live) {
    for (const c of r.children) c.kill('SIGKILL');
    const pids = new Set<number>();
    if (r.vm) pids.add(r.vm.process.pid);
    try {
      if (r.pidFile) pids.add(Number(readFileSync(r.pidFile, 'utf8').trim()));
    } catch {
      // QEMU has not written it yet, or is gone
    }
    for (const pid of pids) {
      try {
        // Only a QEMU of this bench (pid reuse).
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('bench-net-')) {
          process.kill(pid, 'SIGKILL');
        }
      } catch {
        // already gone
      }
    }
    for (const n of r.netns) trySh(['ip', 'netns', 'del', n], 10_000);
  }
}

/** Starts the peer side of this file in namespace `ns`; resolves its stdout when it exits 0. */
function peer(
  r: RunResources,
  ns: string,
  args: string[],
  timeoutMs: number,
): { child: ChildProcess; done: Promise<string> } {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, SELF, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  r.children.push(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  const done = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`peer ${args[0]} exited ${code ?? signal}: ${err.trim()}`));
    });
  });
  done.catch(() => {});
  return { child, done };
}

/** A small ext4 image holding a busybox rootfs under rootfs/ (the container's block rootfs). */
function rootfsImage(scratch: string): string {
  const tree = path.join(scratch, 'rootfs-tree');
  busyboxRootfs(path.join(tree, 'rootfs'));
  const img = path.join(scratch, 'rootfs.img');
  sh(['truncate', '-s', '32M', img]);
  sh(['mkfs.ext4', '-q', '-F', '-d', tree, img]);
  return img;
}

interface RunFigures {
  reachableMs: number;
  tapsMs: number;
  bootMs: number;
  /** UpdateInterface + UpdateRoutes */
  pushMs: number;
  createSandboxMs: number;
  /** CreateContainer (block rootfs mount) + StartContainer */
  containerMs: number;
}

async function oneRun(
  i: number,
  tag: string,
  scratch: string,
  img: string,
  image: { kernel: string; initrd: string },
  rtt?: { exchanges: number; out: number[] },
): Promise<RunFigures> {
  const pod = `kb-pod-${tag}-${i}`;
  const out = `kb-out-${tag}-${i}`;
  const r: RunResources = { netns: [], children: [] };
  live.add(r);
  try {
    // The namespace as a CNI would leave it: veth with address, default route; peer outside.
    for (const n of [pod, out]) {
      sh(['ip', 'netns', 'add', n]);
      r.netns.push(n);
      sh(['ip', '-n', n, 'link', 'set', 'lo', 'up']);
    }
    sh([
      'ip',
      '-n',
      pod,
      'link',
      'add',
      'eth0',
      'type',
      'veth',
      'peer',
      'name',
      'peer0',
      'netns',
      out,
    ]);
    sh(['ip', '-n', pod, 'addr', 'add', `${POD_IP}/24`, 'dev', 'eth0']);
    sh(['ip', '-n', pod, 'link', 'set', 'eth0', 'up']);
    sh(['ip', '-n', pod, 'route', 'add', 'default', 'via', PEER_IP, 'dev', 'eth0']);
    sh(['ip', '-n', out, 'addr', 'add', `${PEER_IP}/24`, 'dev', 'peer0']);
    sh(['ip', '-n', out, 'link', 'set', 'peer0', 'up']);

    const t0 = performance.now();
    const wall0 = Date.now();
    const probe = peer(r, out, ['--peer-probe', POD_IP, String(PORT), '300000'], 310_000);

    const nsPath = checkNetnsPath(`/run/netns/${pod}`);
    const cfg = guestNetworkConfig(await readNetns(nsPath));
    const eps = await attach(
      nsPath,
      cfg.interfaces.map((x) => ({ name: x.name, hwAddr: x.hwAddr, mtu: x.mtu })),
      `bench-${i}`,
    );
    r.taps = { nsPath, eps };
    const tapsMs = performance.now() - t0;

    const dir = path.join(scratch, `vm${i}`);
    const cid = 'echo';
    const vmCfg = vmConfig(dir, `bench-net-${i}`, image, {
      nics: nicsFor(eps),
      drives: [{ path: img, serialId: cid }],
    });
    r.pidFile = vmCfg.pidFile;
    const vm = await bootTestVm(vmCfg, dir, { launchPrefix: netnsLaunchPrefix(nsPath) });
    r.vm = vm;
    const tBooted = performance.now();
    for (const x of cfg.interfaces) await vm.client.updateInterface(x, { timeoutMs: 30_000 });
    await vm.client.updateRoutes(cfg.routes, { timeoutMs: 30_000 });
    const tPushed = performance.now();
    await vm.client.createSandbox(
      {
        sandboxId: `bench-net-${i}`,
        hostname: `bench-net-${i}`,
        dns: { nameservers: [], searches: [] },
        storages: [],
      },
      { timeoutMs: 60_000 },
    );
    const tSandbox = performance.now();
    const req = containerRequest(cid, `exec nc -ll -p ${PORT} -e cat`, {
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
    const tStarted = performance.now();

    const m = /connected (\d+)/.exec(await probe.done);
    if (!m) throw new Error('the prober printed no connect time');
    const reachableMs = Number(m[1]) - wall0;
    const f: RunFigures = {
      reachableMs,
      tapsMs,
      bootMs: vm.bootMillis,
      pushMs: tPushed - tBooted,
      createSandboxMs: tSandbox - tPushed,
      containerMs: tStarted - tSandbox,
    };
    console.log(
      `run ${i + 1}: namespace ready -> guest reachable (TCP connect from the peer) ${ms(reachableMs)}; ` +
        `read namespace + taps ${ms(tapsMs)}, QEMU start -> agent Check ${ms(vm.bootMillis)}, ` +
        `UpdateInterface + UpdateRoutes ${ms(f.pushMs)}, CreateSandbox ${ms(f.createSandboxMs)}, ` +
        `CreateContainer + StartContainer ${ms(f.containerMs)}, ` +
        `first connect ${ms(reachableMs - (tStarted - t0))} after that`,
    );

    if (rtt) {
      const res = peer(
        r,
        out,
        ['--peer-rtt', POD_IP, String(PORT), String(rtt.exchanges), String(WARMUP)],
        600_000,
      );
      rtt.out.push(...(JSON.parse(await res.done) as number[]));
    }
    return f;
  } finally {
    await cleanup(r);
  }
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 5);
  const exchanges = Number(process.argv[3] ?? 1000);
  const vmlinux = path.join(IMAGE, 'vmlinux');
  const image = {
    kernel: existsSync(vmlinux) ? vmlinux : path.join(IMAGE, 'vmlinuz'),
    initrd: path.join(IMAGE, 'initrd'),
  };
  if (!existsSync(image.initrd)) throw new Error(`no guest image at ${IMAGE}: run make guest`);
  mkdirSync('/run/netns', { recursive: true });
  const tag = randomBytes(3).toString('hex');
  const scratch = mkdtempSync(path.join(tmpdir(), 'bench-network-'));
  const onSignal = (sig: NodeJS.Signals): void => {
    emergencyCleanup();
    rmSync(scratch, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  console.log(
    `network bench: TCG, 1 vCPU, 512 MiB, machine pc, tcfilter (tap + tc mirred), busybox nc in a ` +
      `container on an ext4 block rootfs; host ${cpus().length} cores, load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  const figures: RunFigures[] = [];
  const rtts: number[] = [];
  try {
    const img = rootfsImage(scratch);
    for (let i = 0; i < runs; i++) {
      const last = i === runs - 1;
      figures.push(
        await oneRun(i, tag, scratch, img, image, last ? { exchanges, out: rtts } : undefined),
      );
    }
  } finally {
    for (const r of [...live]) await cleanup(r);
    rmSync(scratch, { recursive: true, force: true });
  }

  const summary = (name: string, xs: number[]): string => {
    const s = [...xs].sort((a, b) => a - b);
    return `${name}: median ${ms(quantile(s, 0.5))}, min ${ms(s[0] ?? NaN)}, max ${ms(s[s.length - 1] ?? NaN)}`;
  };
  console.log(
    summary(
      `namespace ready -> guest reachable, ${figures.length} runs`,
      figures.map((f) => f.reachableMs),
    ),
  );
  const parts: [string, (f: RunFigures) => number][] = [
    ['read namespace + taps', (f) => f.tapsMs],
    ['QEMU start -> agent Check', (f) => f.bootMs],
    ['UpdateInterface + UpdateRoutes', (f) => f.pushMs],
    ['CreateSandbox', (f) => f.createSandboxMs],
    ['CreateContainer + StartContainer', (f) => f.containerMs],
  ];
  for (const [name, get] of parts) console.log(summary(`  of which ${name}`, figures.map(get)));
  const r = [...rtts].sort((a, b) => a - b);
  console.log(
    `TCP round trip peer -> container (${MESSAGE_BYTES}-byte echo x${r.length} on one connection, after ` +
      `${WARMUP} warm-up): p50 ${quantile(r, 0.5).toFixed(2)} ms, p99 ${quantile(r, 0.99).toFixed(2)} ms, ` +
      `max ${(r[r.length - 1] ?? NaN).toFixed(2)} ms; load at the end ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
}

const mode = process.argv[2];
const entry =
  mode === '--peer-probe'
    ? peerProbe(process.argv[3] ?? '', Number(process.argv[4]), Number(process.argv[5]))
    : mode === '--peer-rtt'
      ? peerRtt(
          process.argv[3] ?? '',
          Number(process.argv[4]),
          Number(process.argv[5]),
          Number(process.argv[6]),
        )
      : main();
entry.then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

// Benchmark: N KataSandboxes over M simulated nodes (node-agent Leases the bench renews, no VMs)
// bound by the real controller against a real control plane of the bench's own, started fresh
// for each size and removed after it, so no run sees another's objects. Prints, per size: time
// from the first create until every sandbox is bound, the controller's writes per sandbox, its
// CPU seconds and peak RSS, and the apiserver's CPU seconds over the same span.
// Usage: node controller-scale.mjs [NxM ...]   (default: 2000x50 10000x500)
import { CoordinationV1Api, CustomObjectsApi, V1MicroTime } from '@kubernetes/client-node';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import PQueue from 'p-queue';
import { streamWatch } from '../src/kube/kube-request.js';
import { newKubeConfig } from '../src/kube/shared-agent.js';
import { cpuSeconds, loadAverage, peakRssMiB } from './proc-stats.js';

// Run from the repository root (as make does); the bundle itself lives elsewhere.
const REPO = process.cwd();
const G = { group: 'kata.sandbox.io', version: 'v1alpha1', plural: 'katasandboxes' };
const NODE_LABEL = 'kata.sandbox.io/node';
const NS = 'bench';

interface Figures {
  n: number;
  nodes: number;
  create_all_s: number;
  bind_all_s: number;
  binds_per_s: number;
  requests_per_sandbox: number;
  writes_per_sandbox: number;
  controller_cpu_s: number;
  controller_rss_mib: number;
  apiserver_cpu_s: number;
  load: number;
}

const sizes = (process.argv.slice(2).length ? process.argv.slice(2) : ['2000x50', '10000x500']).map(
  (s) => {
    const m = /^(\d+)x(\d+)$/.exec(s);
    if (!m) throw new Error(`size ${JSON.stringify(s)}: expected NxM (sandboxes x nodes)`);
    return { n: Number(m[1]), nodes: Number(m[2]) };
  },
);

async function bundleController(dir: string): Promise<string> {
  const bundle = path.join(dir, 'kata-controller.mjs');
  await build({
    entryPoints: [path.join(REPO, 'src/controllers/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: bundle,
    banner: {
      js: "import{createRequire}from'module';const require=createRequire(import.meta.url);",
    },
    logLevel: 'error',
  });
  return bundle;
}

/** A control plane of this run's own: started here, stopped and removed by `down`. */
function privatePlane(dir: string) {
  const env = { ...process.env, KATA_CP_DIR: path.join(dir, 'plane') };
  const cp = (args: string[]): string =>
    execFileSync(path.join(REPO, 'hack/controlplane.sh'), args, {
      encoding: 'utf8',
      timeout: 3_600_000,
      env,
    })
      .trim()
      .split('\n')
      .pop()!;
  const admin = cp(['up']);
  const kubectl = (args: string[]): string =>
    execFileSync('kubectl', ['--kubeconfig', admin, ...args], {
      encoding: 'utf8',
      timeout: 120_000,
    });
  const apiserverPid = Number(readFileSync(path.join(env.KATA_CP_DIR, 'apiserver.pid'), 'utf8'));
  return { admin, cp, kubectl, apiserverPid, down: () => cp(['down']) };
}

async function runSize(
  n: number,
  nodeCount: number,
  bundle: string,
  dir: string,
): Promise<Figures> {
  const plane = privatePlane(dir);
  const stops: (() => void)[] = [];
  try {
    const { admin, kubectl } = plane;
    const kc = newKubeConfig();
    kc.loadFromFile(admin);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const coord = kc.makeApiClient(CoordinationV1Api);
    kubectl([
      'apply',
      '--server-side',
      '-f',
      path.join(REPO, 'deploy/crds/kata.sandbox.io_katasandboxes.yaml'),
    ]);
    kubectl(['wait', '--for=condition=Established', 'crd/katasandboxes.kata.sandbox.io']);
    kubectl(['create', 'namespace', 'kata-system']);
    kubectl(['create', 'namespace', NS]);
    kubectl(['apply', '--server-side', '-f', path.join(REPO, 'deploy/rbac/controller.yaml')]);

    // Simulated node agents: one write per Lease per beat, with the resourceVersion of the last.
    const nodes = Array.from({ length: nodeCount }, (_, i) => `sim-${i}`);
    const versions = new Map<string, string | undefined>();
    const beat = new PQueue({ concurrency: 16 });
    const renewOne = async (node: string): Promise<void> => {
      const name = `kata-node-${node}`;
      const body = {
        metadata: {
          name,
          namespace: 'kata-system',
          resourceVersion: versions.get(name),
          annotations: {
            'kata.sandbox.io/capacity-sandboxes': String(Math.ceil((n * 2) / nodeCount)),
            'kata.sandbox.io/capacity-memory-mib': String(1_000_000),
          },
        },
        spec: { holderIdentity: node, leaseDurationSeconds: 40, renewTime: new V1MicroTime() },
      };
      const written = versions.has(name)
        ? await coord.replaceNamespacedLease({ name, namespace: 'kata-system', body })
        : await coord.createNamespacedLease({ namespace: 'kata-system', body });
      versions.set(name, written.metadata?.resourceVersion);
    };
    const renew = () => Promise.all(nodes.map((node) => beat.add(() => renewOne(node))));
    await renew();
    let renewing = false;
    // A renewal that races another writer is simply retried at the next beat.
    const heartbeat = setInterval(() => {
      if (renewing) return;
      renewing = true;
      renew()
        .catch(() => undefined)
        .finally(() => (renewing = false));
    }, 10_000);
    stops.push(() => clearInterval(heartbeat));

    const saKubeconfig = plane.cp(['kubeconfig-for', 'kata-system', 'kata-controller']);
    const requestsFile = path.join(dir, `requests-${n}`);
    const controller = spawn(
      process.execPath,
      [
        ...['--import', path.join(REPO, 'bench/count-requests.mjs'), bundle],
        ...['--kubeconfig', saKubeconfig, '--metrics-port', '0', '--leader-elect', 'false'],
        ...['--concurrency', '16'],
      ],
      {
        stdio: 'ignore',
        env: { ...process.env, LOG_LEVEL: 'warn', KATA_BENCH_REQUESTS_FILE: requestsFile },
      },
    );
    stops.push(() => controller.kill('SIGKILL'));
    const counts = (): { requests: number; writes: number } => {
      try {
        return JSON.parse(readFileSync(requestsFile, 'utf8')) as {
          requests: number;
          writes: number;
        };
      } catch {
        return { requests: 0, writes: 0 };
      }
    };
    // Started (informers synced and idle) once its request count stops moving.
    let last = -1;
    for (let i = 0; i < 60 && counts().requests !== last; i++) {
      last = counts().requests;
      await new Promise((r) => setTimeout(r, 1500));
    }

    // One watch stream counts bindings (no repeated lists of every object).
    const bound = new Set<string>();
    const watching = new AbortController();
    stops.push(() => watching.abort(new Error('done')));
    let allBound: () => void = () => undefined;
    const done = new Promise<void>((r) => (allBound = r));
    const watch = async (): Promise<void> => {
      while (!watching.signal.aborted) {
        await streamWatch(
          kc,
          `/apis/${G.group}/${G.version}/namespaces/${NS}/${G.plural}`,
          { allowWatchBookmarks: false },
          (ev) => {
            const o = ev.object as {
              metadata?: { name?: string; labels?: Record<string, string> };
            };
            if (o.metadata?.labels?.[NODE_LABEL] && o.metadata.name) bound.add(o.metadata.name);
            if (bound.size >= n) allBound();
          },
          watching.signal,
        ).catch(() => undefined);
      }
    };
    void watch();

    const before = {
      ctl: counts(),
      ctlCpu: cpuSeconds(controller.pid!),
      api: cpuSeconds(plane.apiserverPid),
    };
    const started = Date.now();
    const create = new PQueue({ concurrency: 32 });
    for (let i = 0; i < n; i++) {
      void create.add(() =>
        custom.createNamespacedCustomObject({
          ...G,
          namespace: NS,
          body: {
            apiVersion: 'kata.sandbox.io/v1alpha1',
            kind: 'KataSandbox',
            metadata: { name: `sb-${i}` },
            spec: { containers: [{ name: 'main', image: 'busybox:1.36' }] },
          },
        }),
      );
    }
    await create.onIdle();
    const created = Date.now();
    const deadline = setTimeout(() => watching.abort(new Error('timeout')), 30 * 60_000);
    await Promise.race([
      done,
      new Promise((_, reject) =>
        watching.signal.addEventListener('abort', () =>
          reject(new Error(`only ${bound.size}/${n} bound after 30 min`)),
        ),
      ),
    ]);
    clearTimeout(deadline);
    const finished = Date.now();
    const apiCpu = cpuSeconds(plane.apiserverPid) - before.api;
    // Let the controller finish the writes that follow binding (status, Events) before counting.
    let settled = -1;
    while (counts().requests !== settled) {
      settled = counts().requests;
      await new Promise((r) => setTimeout(r, 2000));
    }
    const after = counts();
    const figures: Figures = {
      n,
      nodes: nodeCount,
      create_all_s: (created - started) / 1000,
      bind_all_s: (finished - started) / 1000,
      binds_per_s: n / ((finished - started) / 1000),
      requests_per_sandbox: (after.requests - before.ctl.requests) / n,
      writes_per_sandbox: (after.writes - before.ctl.writes) / n,
      controller_cpu_s: cpuSeconds(controller.pid!) - before.ctlCpu,
      controller_rss_mib: peakRssMiB(controller.pid!),
      apiserver_cpu_s: apiCpu,
      load: loadAverage(),
    };
    return figures;
  } finally {
    for (const stop of stops.reverse()) stop();
    plane.down();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kata-bench-controller-'));
  try {
    const bundle = await bundleController(dir);
    const runs: Figures[] = [];
    for (const { n, nodes } of sizes) runs.push(await runSize(n, nodes, bundle, dir));
    const r2 = (x: number) => Math.round(x * 100) / 100;
    console.log('controller: sandboxes bound over simulated nodes (fresh plane per size)');
    console.log(
      '  n       nodes  bind all  binds/s  writes/sb  req/sb  ctl CPU  ctl RSS   apiserver CPU  load',
    );
    for (const f of runs) {
      console.log(
        `  ${String(f.n).padEnd(7)} ${String(f.nodes).padEnd(6)} ${f.bind_all_s.toFixed(1).padStart(6)} s ` +
          `${f.binds_per_s.toFixed(0).padStart(7)}  ${f.writes_per_sandbox.toFixed(2).padStart(9)} ` +
          `${f.requests_per_sandbox.toFixed(2).padStart(7)} ${f.controller_cpu_s.toFixed(1).padStart(6)} s ` +
          `${f.controller_rss_mib.toFixed(0).padStart(5)} MiB ${f.apiserver_cpu_s.toFixed(1).padStart(9)} s  ${f.load.toFixed(2)}`,
      );
    }
    console.log(
      `bench-result ${JSON.stringify({
        bench: 'controller-scale',
        runs: runs.map((f) => Object.fromEntries(Object.entries(f).map(([k, v]) => [k, r2(v)]))),
      })}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

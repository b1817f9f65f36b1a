// Benchmark: N KataSandboxes over M simulated nodes (Leases only, no VMs) against the real control
// plane. Prints the time until all are Scheduled, API requests per sandbox made by the
// controller, and its peak RSS. Usage: node controller-scale.mjs [sandboxes] [nodes]
import {
  CoordinationV1Api,
  CustomObjectsApi,
  V1MicroTime,
} from '@kubernetes/client-node';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import PQueue from 'p-queue';
import { newKubeConfig } from '../src/kube/shared-agent.js';

// Run from the repository root (as make does); the bundle itself lives elsewhere.
const REPO = process.cwd();
const SANDBOXES = Number(process.argv[2] ?? 2000);
const NODES = Number(process.argv[3] ?? 50);
const G = { group: 'kata.sandbox.io', version: 'v1alpha1', plural: 'katasandboxes' };
const cp = (args: string[]): string =>
  execFileSync(path.join(REPO, 'hack/controlplane.sh'), args, {
    encoding: 'utf8',
    timeout: 3_600_000,
  })
    .trim()
    .split('\n')
    .pop()!;
const kubectl = (kubeconfig: string, args: string[]): string =>
  execFileSync('kubectl', ['--kubeconfig', kubeconfig, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });

function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function main(): Promise<void> {
  const admin = cp(['up']);
  const kc = newKubeConfig();
  kc.loadFromFile(admin);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const coord = kc.makeApiClient(CoordinationV1Api);
  kubectl(admin, [
    'apply',
    '--server-side',
    '-f',
    path.join(REPO, 'deploy/crds/kata.sandbox.io_katasandboxes.yaml'),
  ]);
  kubectl(admin, ['wait', '--for=condition=Established', 'crd/katasandboxes.kata.sandbox.io']);
  try {
    kubectl(admin, ['create', 'namespace', 'kata-system']);
  } catch {
    /* exists */
  }
  kubectl(admin, ['apply', '--server-side', '-f', path.join(REPO, 'deploy/rbac/controller.yaml')]);
  const run = randomBytes(3).toString('hex');
  const ns = `bench-${run}`;
  kubectl(admin, ['create', 'namespace', ns]);

  const nodes = Array.from({ length: NODES }, (_, i) => `bench-${run}-${i}`);
  // Simulated node agents: one write per Lease per beat, with the resourceVersion of the last one.
  const versions = new Map<string, string | undefined>();
  const renewOne = async (n: string): Promise<void> => {
    const name = `kata-node-${n}`;
    const body = {
      metadata: {
        name,
        namespace: 'kata-system',
        resourceVersion: versions.get(name),
        annotations: {
          'kata.sandbox.io/capacity-sandboxes': String(Math.ceil((SANDBOXES * 2) / NODES)),
          'kata.sandbox.io/capacity-memory-mib': String(1_000_000),
        },
      },
      spec: { holderIdentity: n, leaseDurationSeconds: 40, renewTime: new V1MicroTime() },
    };
    const written = versions.has(name)
      ? await coord.replaceNamespacedLease({ name, namespace: 'kata-system', body })
      : await coord.createNamespacedLease({ namespace: 'kata-system', body });
    versions.set(name, written.metadata?.resourceVersion);
  };
  const renew = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => renewOne(n)));
  };
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

  const dir = mkdtempSync(path.join(tmpdir(), 'kata-bench-'));
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
  const saKubeconfig = cp(['kubeconfig-for', 'kata-system', 'kata-controller']);
  const requestsFile = path.join(dir, 'requests');
  const controller = spawn(
    process.execPath,
    [
      '--import',
      path.join(REPO, 'bench/count-requests.mjs'),
      bundle,
      '--kubeconfig',
      saKubeconfig,
      '--metrics-port',
      '0',
      '--leader-elect',
      'false',
      '--concurrency',
      '16',
    ],
    {
      stdio: 'ignore',
      env: { ...process.env, LOG_LEVEL: 'warn', KATA_BENCH_REQUESTS_FILE: requestsFile },
    },
  );
  await new Promise((r) => setTimeout(r, 3000));
  const baseline = Number(readFileSync(requestsFile, 'utf8'));

  const started = Date.now();
  const q = new PQueue({ concurrency: 32 });
  for (let i = 0; i < SANDBOXES; i++) {
    void q.add(() =>
      custom.createNamespacedCustomObject({
        ...G,
        namespace: ns,
        body: {
          apiVersion: 'kata.sandbox.io/v1alpha1',
          kind: 'KataSandbox',
          metadata: { name: `sb-${i}` },
          spec: { containers: [{ name: 'main', image: 'busybox:1.36' }] },
        },
      }),
    );
  }
  await q.onIdle();
  const created = Date.now();
  let scheduled = 0;
  while (scheduled < SANDBOXES) {
    await new Promise((r) => setTimeout(r, 1000));
    const list = (await custom.listNamespacedCustomObject({ ...G, namespace: ns })) as {
      items: { metadata?: { labels?: Record<string, string> } }[];
    };
    // Bound is what counts: a sandbox whose simulated node later lapsed was scheduled all the same.
    scheduled = list.items.filter((s) => s.metadata?.labels?.['kata.sandbox.io/node']).length;
    if (Date.now() - started > 30 * 60_000)
      throw new Error(`only ${scheduled} scheduled after 30 min`);
  }
  const done = Date.now();
  const rss = peakRssMiB(controller.pid!);
  await new Promise((r) => setTimeout(r, 1500));
  const requests = Number(readFileSync(requestsFile, 'utf8')) - baseline;
  controller.kill('SIGTERM');
  clearInterval(heartbeat);
  kubectl(admin, ['delete', 'namespace', ns, '--wait=false']);

  console.log(`controller: ${SANDBOXES} sandboxes over ${NODES} simulated nodes`);
  console.log(`  create all (client, 32 in flight): ${((created - started) / 1000).toFixed(1)} s`);
  console.log(
    `  first create → all Scheduled:      ${((done - started) / 1000).toFixed(1)} s (${(SANDBOXES / ((done - started) / 1000)).toFixed(0)} sandboxes/s)`,
  );
  console.log(
    `  controller API requests:           ${requests} (${(requests / SANDBOXES).toFixed(2)} per sandbox)`,
  );
  console.log(`  controller peak RSS:               ${rss.toFixed(0)} MiB`);
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

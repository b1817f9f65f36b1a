// Container images on the real stack: Debian's docker-registry on 127.0.0.1, images built here
// with umoci and pushed with skopeo.
//  1. cold pull + unpack into an empty node cache (the image store alone, no VM), RUNS times, for
//     a small busybox image and one with a 32 MiB layer; and a cache hit.
//  2. create → Running through the controller and node agent: a hostPath busybox rootfs, the
//     image on a cold cache (the pull runs while the VM boots), and the image from the warm cache,
//     RUNS times each, interleaved so load affects them alike.
// Usage: node image-pull.mjs [RUNS=3]   (run from the repository root)
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import type { KataSandbox } from '../src/crds/index.js';
import { ImageStore } from '../src/node-agent/images/image-store.js';
import { makeBusyboxRootfs } from '../test/e2e/node-agent-harness.js';
import { phase } from '../test/e2e/sandbox-api.js';
import {
  buildBusyboxImage,
  pushImage,
  startRegistry,
  type TestRegistry,
} from '../test/integration/images-registry.js';
import { deleteAll, startBenchStack, stats } from './bench-stack.js';

const RUNS = Number(process.argv[2] ?? 3);
const LOOP = "trap 'exit 0' TERM; echo up; while true; do sleep 1; done";
const MiB = 1024 * 1024;

async function coldPulls(registry: TestRegistry, work: string): Promise<void> {
  const small = await buildBusyboxImage(work, {
    entrypoint: ['/bin/sh', '-c'],
    cmd: [LOOP],
  });
  await pushImage(small, registry, 'bench/small:1');
  // Random bytes, base64: a layer gzip cannot shrink much.
  const big = await buildBusyboxImage(work, {
    cmd: ['/bin/sh'],
    files: { 'data/blob': randomBytes(24 * MiB).toString('base64') },
  });
  await pushImage(big, registry, 'bench/big:1');

  console.log(`cold pull + unpack into an empty cache (${RUNS} runs each):`);
  for (const [label, repo] of [
    ['small (busybox)', 'bench/small:1'],
    ['32 MiB layer', 'bench/big:1'],
  ] as const) {
    const times: number[] = [];
    const hits: number[] = [];
    let sizes = '';
    for (let i = 0; i < RUNS; i++) {
      const root = mkdtempSync(path.join(work, 'cache-'));
      const store = await ImageStore.open({
        root,
        maxBytes: 1024 * MiB,
        insecureRegistries: [registry.host],
      });
      const h = await store.ensureImage({ image: `${registry.host}/${repo}`, sandboxUid: 'bench' });
      times.push(h.durationMs);
      sizes = `${(h.downloadedBytes / MiB).toFixed(1)} MiB downloaded, ${(h.bytes / MiB).toFixed(1)} MiB unpacked`;
      const again = await store.ensureImage({
        image: `${registry.host}/${repo}`,
        sandboxUid: 'bench-2',
      });
      hits.push(again.durationMs);
      rmSync(root, { recursive: true, force: true });
    }
    console.log(`  ${label.padEnd(18)} ${stats(times)}   (${sizes})`);
    console.log(`  ${`  cache hit`.padEnd(18)} ${stats(hits)}`);
  }
}

async function createToRunning(registry: TestRegistry): Promise<void> {
  const stack = await startBenchStack('image', (base) => [
    ...['--image-cache-dir', path.join(base, 'image-cache')],
    ...['--insecure-registries', registry.host],
  ]);
  const { api } = stack;
  try {
    const rootfs = path.join(stack.roots, 'busybox');
    makeBusyboxRootfs(rootfs);
    const runOne = async (name: string, container: object): Promise<number> => {
      const t0 = Date.now();
      await api.create(name, {
        terminationGracePeriodSeconds: 2,
        containers: [{ name: 'main', ...container }],
      });
      const sb = (await api.waitFor(name, 'Running', phase('Running'), 600_000)) as KataSandbox;
      const ready = sb.status?.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime;
      await deleteAll(api, [name]);
      return ready ? new Date(ready).getTime() - t0 : NaN;
    };
    const hostPath = { rootfs: { hostPath: { path: rootfs } }, command: ['/bin/sh', '-c', LOOP] };
    const results: Record<'hostPath' | 'cold' | 'warm', number[]> = {
      hostPath: [],
      cold: [],
      warm: [],
    };
    for (let i = 0; i < RUNS; i++) {
      results.hostPath.push(await runOne(`host-${i}`, hostPath));
      // A tag never pulled before: the cache is cold for it.
      const tag = `cold-${process.pid}-${i}`;
      await pushImage(await buildColdImage(stack.base, i), registry, `bench/small:${tag}`);
      results.cold.push(
        await runOne(`cold-${i}`, { image: `${registry.host}/bench/small:${tag}` }),
      );
      results.warm.push(
        await runOne(`warm-${i}`, { image: `${registry.host}/bench/small:${tag}` }),
      );
      console.log(
        `run ${i + 1}/${RUNS}: hostPath ${(results.hostPath[i]! / 1000).toFixed(2)} s, image cold ${(results.cold[i]! / 1000).toFixed(2)} s, warm ${(results.warm[i]! / 1000).toFixed(2)} s`,
      );
    }
    console.log(`\ncreate → Running (${RUNS} runs each, interleaved):`);
    console.log(`  hostPath rootfs                  ${stats(results.hostPath)}`);
    console.log(`  image, cold cache (pull ∥ boot)  ${stats(results.cold)}`);
    console.log(`  image, warm cache                ${stats(results.warm)}`);
  } finally {
    await stack.teardown();
  }
}

/** A busybox image whose content differs per run, so its digest is new to the cache. */
function buildColdImage(base: string, i: number): Promise<string> {
  const work = path.join(base, `cold-${i}`);
  mkdirSync(work, { recursive: true });
  return buildBusyboxImage(work, {
    entrypoint: ['/bin/sh', '-c'],
    cmd: [LOOP],
    files: { 'etc/run-id': `${process.pid}-${i}-${Date.now()}\n` },
  });
}

async function main(): Promise<void> {
  const registry = await startRegistry();
  const work = mkdtempSync(path.join(tmpdir(), 'kata-bench-pull-'));
  try {
    await coldPulls(registry, work);
    console.log('');
    await createToRunning(registry);
    console.log(
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
process.exit(0);

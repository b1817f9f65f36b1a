// Benchmark: what opening host paths through kata-host-fs costs the node agent per call, next to
// what it replaces. `make bench` bundles this file with esbuild and runs it with node.
//   node host-fs.mjs [calls=200]
// Sequential calls through the node agent's wrapper (src/node-agent/host-fs/): `check` of a
// volume path; `bind` of a read-only volume + `umount` of it; and, for comparison, realpath()
// (the old check) and mount(8) --bind + remount,ro + umount(8) (the old bind). Each call spawns
// the helper, so the figures are mostly process start-up. Needs root (mounts). Temp dirs and
// mounts are removed at the end.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  bindBeneath,
  checkBeneath,
  unmountBeneath,
  type HostFs,
} from '../src/node-agent/host-fs/index.js';
import { removeScratch } from '../test/e2e/sandbox-api.js';
import { builtHostFsBinary } from '../test/integration/host-fs-binary.js';

const execFileAsync = promisify(execFile);
const CALLS = Number(process.argv[2] ?? 200);
const WARMUP = 10;

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

async function measure(name: string, once: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < WARMUP; i++) await once(i);
  const times: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t0 = process.hrtime.bigint();
    await once(i);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  const f = (n: number): string => n.toFixed(2).padStart(7);
  console.log(
    `  ${name.padEnd(52)} mean ${f(mean)} ms  p50 ${f(quantile(times, 0.5))} ms  p95 ${f(quantile(times, 0.95))} ms`,
  );
}

async function main(): Promise<void> {
  const hostFs: HostFs = { binary: builtHostFsBinary() };
  const base = realpathSync(mkdtempSync('/tmp/kata-host-fs-bench-'));
  try {
    const root = path.join(base, 'roots');
    const share = path.join(base, 'share');
    mkdirSync(path.join(root, 'vols/a/data'), { recursive: true });
    mkdirSync(path.join(share, 'c/old'), { recursive: true });
    const volume = path.join(root, 'vols/a/data');
    const field = 'spec.volumes[0].hostPath.path';
    console.log(
      `kata-host-fs, ${CALLS} sequential calls each after ${WARMUP} warm-up (load average ${loadavg()[0]?.toFixed(1)}):`,
    );
    await measure('check (kata-host-fs check via checkBeneath)', () =>
      checkBeneath(hostFs, { field, path: volume }, [{ root, type: 'dir' }]),
    );
    await measure('  old: realpath()', () => realpath(volume));
    await measure('bind --ro + umount (bindBeneath, unmountBeneath)', async () => {
      await bindBeneath(hostFs, {
        sourceRoot: root,
        source: volume,
        type: 'dir',
        targetRoot: share,
        target: 'c/vol',
        readOnly: true,
      });
      await unmountBeneath(hostFs, share, 'c/vol');
    });
    const target = path.join(share, 'c/old');
    await measure('  old: mount --bind + remount,bind,ro + umount', async () => {
      await execFileAsync('mount', ['--bind', volume, target], { timeout: 15_000 });
      await execFileAsync('mount', ['-o', 'remount,bind,ro', target], { timeout: 15_000 });
      await execFileAsync('umount', [target], { timeout: 15_000 });
    });
    await measure('helper start-up alone (usage error)', () =>
      execFileAsync(hostFs.binary, [], { timeout: 15_000 }).catch(() => undefined),
    );
  } finally {
    await removeScratch(base);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

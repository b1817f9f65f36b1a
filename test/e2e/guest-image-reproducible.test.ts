// guest/build.sh claims "same inputs → same hash and same bytes". This builds the real image
// (stock Debian kernel, busybox, crun, Node.js, the guest agent) twice with GUEST_FORCE=1 into two
// temporary cache roots and compares the hash directory names and the bytes of every artefact;
// then a changed input (GUEST_NODE_OPTIONS) must give another hash, and an unforced re-run with
// the same inputs must reuse the image (and prune old image dirs). The kernel .deb cache is the user's own (GUEST_DEB_CACHE),
// so nothing is downloaded twice. A forced build takes ~30 s on the 2-core machine.
//
// The agent is bundled once here and handed to every build (GUEST_AGENT_BUNDLE): other people edit
// src/ while this runs, and an edit between two builds is a changed input, not a broken builder.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { guestImageCacheRoot } from '../../src/node-agent/hypervisor/guest-image.js';
import { bundleGuestAgent } from '../fixtures/agent-bundle.js';

const REPO = path.resolve(import.meta.dirname, '../..');
// The default kernel (made for the job) at the top level with its erofs root, Debian's stock one
// under debian/.
const ARTEFACTS = [
  'initrd',
  'rootfs.erofs',
  'vmlinux',
  'vmlinuz',
  'manifest.json',
  'config',
  'inputs.txt',
  'debian/vmlinux',
  'debian/vmlinuz',
  'debian/config',
];
const BUILD_TIMEOUT_MS = 10 * 60_000;

let scratch: string;
let agentBundle: string;

interface Build {
  dir: string;
  hash: string;
  millis: number;
  stderr: string;
}

/** Runs guest/build.sh into `root` with `env` on top of the defaults; resolves the image dir. */
function build(root: string, env: Record<string, string> = {}): Promise<Build> {
  const base: NodeJS.ProcessEnv = { ...process.env };
  // Builder knobs from the caller's environment would make the images differ from the defaults.
  for (const k of Object.keys(base)) if (k.startsWith('GUEST_')) delete base[k];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(
      path.join(REPO, 'guest/build.sh'),
      [],
      {
        cwd: REPO,
        timeout: BUILD_TIMEOUT_MS,
        maxBuffer: 16 << 20,
        env: {
          ...base,
          GUEST_CACHE_ROOT: root,
          GUEST_DEB_CACHE: path.join(guestImageCacheRoot(), 'debs'),
          GUEST_AGENT_BUNDLE: agentBundle,
          ...env,
        },
      },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`guest/build.sh into ${root} failed: ${err.message}\n${stderr}`));
          return;
        }
        const dir = stdout.trim().split('\n').pop() ?? '';
        resolve({ dir, hash: path.basename(dir), millis: performance.now() - t0, stderr });
      },
    );
  });
}

const hashDirs = (root: string): string[] =>
  readdirSync(root)
    .filter((n) => /^[0-9a-f]{16}$/.test(n))
    .sort();

beforeAll(() => {
  scratch = mkdtempSync(path.join(tmpdir(), 'guest-repro-'));
  // guest/build.sh's own bundle: a .cjs bundle goes through the loader with a V8 code cache, so
  // the cache's bytes are compared too.
  agentBundle = path.join(scratch, 'kata-guest-agent.cjs');
  bundleGuestAgent(agentBundle);
}, 180_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('guest image builder (real build)', () => {
  it(
    'same inputs → same hash and byte-identical image; a changed input → another hash; no rebuild when unchanged',
    async () => {
      const rootA = path.join(scratch, 'a');
      const rootB = path.join(scratch, 'b');
      // One at a time: the machine has 2 cores and others build and boot VMs on it too.
      const a = await build(rootA, { GUEST_FORCE: '1' });
      const b = await build(rootB, { GUEST_FORCE: '1' });
      console.log(
        `forced guest image builds: ${(a.millis / 1000).toFixed(1)} s and ${(b.millis / 1000).toFixed(1)} s; hash ${a.hash}`,
      );

      expect(a.hash).toMatch(/^[0-9a-f]{16}$/);
      expect(a.stderr).toMatch(/agent code cache accepted/);
      expect(b.hash).toBe(a.hash);
      expect(a.dir).toBe(path.join(rootA, a.hash));
      expect(readlinkSync(path.join(rootA, 'current'))).toBe(a.hash);
      expect(readlinkSync(path.join(rootB, 'current'))).toBe(b.hash);
      for (const f of ARTEFACTS) {
        const x = readFileSync(path.join(a.dir, f));
        const y = readFileSync(path.join(b.dir, f));
        expect(x.length).toBeGreaterThan(0);
        // Buffer.equals, not toEqual: a 150 MB diff would be unreadable.
        expect({ file: f, identical: x.equals(y) }).toEqual({ file: f, identical: true });
      }
      const manifest = JSON.parse(readFileSync(path.join(a.dir, 'manifest.json'), 'utf8')) as {
        hash: string;
        agentNodeOptions: string;
      };
      expect(manifest.hash).toBe(a.hash);
      expect(manifest.agentNodeOptions).toBe('');

      // Unchanged inputs, no GUEST_FORCE: the image is reused, not rebuilt; old image dirs beyond
      // GUEST_KEEP_IMAGES are pruned (by last use), other entries of the root are left alone.
      const old = ['00000000000000a1', '00000000000000a2', '00000000000000a3'];
      old.forEach((n, i) => {
        mkdirSync(path.join(rootB, n));
        const t = Date.now() / 1000 - 3600 * (10 - i);
        utimesSync(path.join(rootB, n), t, t);
      });
      mkdirSync(path.join(rootB, 'not-an-image'));
      const again = await build(rootB, { GUEST_KEEP_IMAGES: '2' });
      expect(again.dir).toBe(b.dir);
      expect(again.stderr).toMatch(/up to date/);
      expect(again.stderr).not.toMatch(/building/);
      expect(hashDirs(rootB)).toEqual([old[2], b.hash].sort());
      expect(existsSync(path.join(rootB, 'not-an-image'))).toBe(true);

      // A changed input: another hash, its own dir; `current` moves to it, the old image stays.
      const changed = await build(rootA, { GUEST_NODE_OPTIONS: '--max-old-space-size=96' });
      expect(changed.hash).toMatch(/^[0-9a-f]{16}$/);
      expect(changed.hash).not.toBe(a.hash);
      expect(
        JSON.parse(readFileSync(path.join(changed.dir, 'manifest.json'), 'utf8')).agentNodeOptions,
      ).toBe('--max-old-space-size=96');
      expect(readlinkSync(path.join(rootA, 'current'))).toBe(changed.hash);
      expect(hashDirs(rootA)).toEqual([a.hash, changed.hash].sort());
    },
    15 * 60_000,
  );
});

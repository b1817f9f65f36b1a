// Issue 14 as a hostile tenant, against the node agent's real host preparation: a second process
// flips a path under the allowed root between a real directory and a symlink leading out of the
// root while the node agent checks it and then uses it (QEMU's drive descriptors; the 9p share's
// binds and the hostPath rootfs view), 200 attempts each; the flip must never win. Then: a symlink
// the guest plants in the share never redirects a host mount, and teardown leaves nothing; block
// devices only under the device roots, image files only under the host-path roots (row 8).
// Most attempts stop before a VM (a stand-in program gets QEMU's descriptors); two boot real QEMU.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  lstatSync,
  statSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import type { KataSandboxSpec } from '../../src/crds/index.js';
import type { HostFs } from '../../src/node-agent/host-fs/types.js';
import { HostPathError } from '../../src/node-agent/storage/host-paths.js';
import { launchCommand } from '../../src/node-agent/hypervisor/qemu-process.js';
import { RootfsViews } from '../../src/node-agent/images/rootfs-view.js';
import { mountsUnder, readMountInfo } from '../../src/node-agent/storage/mountinfo.js';
import { checkSandboxHostPaths } from '../../src/node-agent/storage/sandbox-host-paths.js';
import { blockDrivePlan } from '../../src/node-agent/runtime/block-drive-plan.js';
import { prepareShareMounts } from '../../src/node-agent/storage/share-mounts.js';
import { bindIntoShare, teardownShare } from '../../src/node-agent/storage/shared-dir.js';
import { vmFiles } from '../../src/node-agent/hypervisor/sandbox-vm.js';
import { builtHostFsBinary } from '../integration/host-fs-binary.js';
import { removeScratch } from './sandbox-api.js';
import { bootTestVm, ensureImage, sh, vmConfig } from './sandbox-vm.js';

jest.setTimeout(20 * 60_000);

const ATTEMPTS = 200;
const VM_ATTEMPTS = 2;
const INSIDE = 'INSIDE-THE-ROOT';
const OUTSIDE = 'OUTSIDE-THE-ROOT';

let base: string;
let root: string;
let outside: string;
let fs: HostFs;
let roots: { allowedHostPathRoots: string[]; allowedDeviceRoots: string[] };
const helperMillis: number[] = [];

beforeAll(() => {
  fs = { binary: builtHostFsBinary() };
  base = mkdtempSync('/tmp/host-path-races-');
  root = path.join(base, 'root');
  outside = path.join(base, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  roots = { allowedHostPathRoots: [root], allowedDeviceRoots: [path.join(base, 'devs')] };
});

afterAll(async () => {
  if (base) await removeScratch(base);
});

/**
 * The attacker: a separate process swapping `name` (under the root) between a real directory and
 * a symlink to the outside dir as fast as it can, atomically (renameat2 RENAME_EXCHANGE, so the
 * path always exists); it writes its flip count to `countFile`.
 */
function startFlipper(dir: string, name: string, countFile: string): ChildProcess {
  const script = `
    my ($p, $other, $countFile) = @ARGV;
    my ($n, $stop) = (0, 0);
    $SIG{TERM} = sub { $stop = 1 };
    sub save { open(my $f, '>', $countFile) or die; print $f $n; close($f); }
    until ($stop) {
      # 316: renameat2 on x86_64; -100: AT_FDCWD; 2: RENAME_EXCHANGE.
      syscall(316, -100, $p, -100, $other, 2) == 0 or die "renameat2: $!";
      $n++;
      save() if $n % 256 == 0;
    }
    save();`;
  return spawn(
    'perl',
    ['-e', script, path.join(dir, name), path.join(dir, `.${name}.other`), countFile],
    {
      stdio: 'ignore',
    },
  );
}

function flips(countFile: string): number {
  try {
    return Number(readFileSync(countFile, 'utf8')) || 0;
  } catch {
    return 0;
  }
}

async function stopFlipper(child: ChildProcess): Promise<void> {
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}

/** `name` under the root: a real dir holding `inside`, swapped with a symlink to an outside one. */
function flippable(name: string, fill: (dir: string, content: string) => void): string {
  const real = path.join(root, name);
  mkdirSync(real);
  fill(real, INSIDE);
  const out = path.join(outside, name);
  mkdirSync(out);
  fill(out, OUTSIDE);
  symlinkSync(out, path.join(root, `.${name}.other`));
  return real;
}

function run(argv: { command: string; args: string[] }): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(argv.command, argv.args, { timeout: 15_000 }, (err, stdout) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, out: stdout });
    });
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    helperMillis.push(performance.now() - t0);
  }
}

describe('symlink races against the real host preparation (issue 14 rows 1, 2, 3)', () => {
  it(`row 1: a block rootfs path flipped to a symlink out of the root — ${ATTEMPTS} launches, QEMU's descriptor never the outside file`, async () => {
    const flip = flippable('blk', (d, content) =>
      writeFileSync(path.join(d, 'disk.img'), `${content}\n`.padEnd(4096, '\0')),
    );
    const spec = {
      containers: [{ name: 'c', rootfs: { block: { path: path.join(flip, 'disk.img') } } }],
    } as unknown as KataSandboxSpec;
    const countFile = path.join(base, 'blk.count');
    const flipper = startFlipper(root, 'blk', countFile);
    const outcome = { inside: 0, refusedAtCheck: 0, refusedAtOpen: 0, outside: 0 };
    let attemptsWithFlips = 0;
    try {
      while (flips(countFile) === 0) await new Promise((r) => setTimeout(r, 10));
      for (let i = 0; i < ATTEMPTS; i++) {
        const before = flips(countFile);
        let plan;
        try {
          // The node agent's own steps: the early check, the drive plan, the launch command
          // (with a stand-in for QEMU that reads the descriptor QEMU would get).
          const checked = await timed(() => checkSandboxHostPaths(fs, spec, roots));
          plan = blockDrivePlan(spec, checked);
        } catch (err) {
          expect(err).toBeInstanceOf(HostPathError);
          expect((err as HostPathError).field).toBe('spec.containers[0].rootfs.block.path');
          outcome.refusedAtCheck++;
          continue;
        } finally {
          if (flips(countFile) > before) attemptsWithFlips++;
        }
        const fd = plan.opens[0]!.fd;
        const res = await run(
          launchCommand({
            qemuBinary: '/bin/sh',
            args: ['-c', `head -c 15 <&${fd}`],
            fds: { hostFs: fs, opens: plan.opens },
          }),
        );
        if (res.code === 125) outcome.refusedAtOpen++;
        else if (res.out === INSIDE) outcome.inside++;
        else outcome.outside++;
      }
    } finally {
      await stopFlipper(flipper);
    }
    console.log(
      `row 1: ${flips(countFile)} flips; ${attemptsWithFlips}/${ATTEMPTS} checks saw the path flip meanwhile; outcomes ${JSON.stringify(outcome)}`,
    );
    expect(outcome.outside).toBe(0);
    expect(outcome.inside + outcome.refusedAtCheck + outcome.refusedAtOpen).toBe(ATTEMPTS);
    // The race was real: the path changed during many attempts and both sides were seen. How many
    // follows the host's load (the flipper shares 2 cores with everything else: 90/200 seen under
    // a loaded CI run), so the bound asks for a race in a tenth of them, not most.
    expect(attemptsWithFlips).toBeGreaterThanOrEqual(ATTEMPTS / 10);
    expect(outcome.inside).toBeGreaterThan(0);
    expect(outcome.refusedAtCheck + outcome.refusedAtOpen).toBeGreaterThan(0);
  });

  it(`row 1 with real QEMU: ${VM_ATTEMPTS} VMs booted while the path flips hold only the inside image`, async () => {
    const image = ensureImage();
    const flip = path.join(root, 'blk');
    const spec = {
      containers: [{ name: 'c', rootfs: { block: { path: path.join(flip, 'disk.img') } } }],
    } as unknown as KataSandboxSpec;
    const id = (p: string): string => {
      const st = statSync(p);
      return `${st.dev}:${st.ino}`;
    };
    const real = lstatSync(flip).isDirectory() ? flip : path.join(root, '.blk.other');
    const insideDisk = id(path.join(real, 'disk.img'));
    const outsideDisk = id(path.join(outside, 'blk', 'disk.img'));
    const countFile = path.join(base, 'blk-vm.count');
    const flipper = startFlipper(root, 'blk', countFile);
    let booted = 0;
    let refused = 0;
    try {
      // Up to 60 tries: about three in four are refused while the path flips (at the check or at
      // the open), so 20 left a 1-in-50 chance of fewer than two boots under load.
      for (let i = 0; booted < VM_ATTEMPTS && i < 60; i++) {
        let plan;
        try {
          plan = blockDrivePlan(spec, await checkSandboxHostPaths(fs, spec, roots));
        } catch {
          refused++;
          continue;
        }
        const dir = path.join(base, `vm-${i}`);
        const vm = await bootTestVm(
          vmConfig(dir, `race-${i}`, image, { drives: plan.drives }),
          dir,
          { fds: { hostFs: fs, opens: plan.opens } },
        ).catch((err: Error) => err);
        if (vm instanceof Error) {
          // The helper refused the open at exec (the flip was on the symlink): no QEMU ran.
          expect(readFileSync(vmFiles(dir).qemuLog, 'utf8')).toMatch(/"code":"(EXDEV|ENOENT)"/);
          refused++;
          continue;
        }
        try {
          // What QEMU holds, by inode (its names change with every swap).
          const held = readdirSync(`/proc/${vm.process.pid}/fd`).flatMap((f) => {
            try {
              const st = statSync(`/proc/${vm.process.pid}/fd/${f}`);
              return [`${st.dev}:${st.ino}`];
            } catch {
              return [];
            }
          });
          expect(held).toContain(insideDisk);
          expect(held).not.toContain(outsideDisk);
          booted++;
        } finally {
          await vm.close();
        }
      }
    } finally {
      await stopFlipper(flipper);
    }
    console.log(`row 1 VMs: ${booted} booted, ${refused} refused, ${flips(countFile)} flips`);
    expect(booted).toBe(VM_ATTEMPTS);
  });

  it(`rows 2 and 3: a volume and a hostPath rootfs flipped to a symlink out of the root — ${ATTEMPTS} share preparations, never the outside dir`, async () => {
    const flip = flippable('tree', (d, content) => writeFileSync(path.join(d, 'marker'), content));
    const spec = {
      containers: [{ name: 'c', rootfs: { hostPath: { path: flip } } }],
      volumes: [{ name: 'v', hostPath: { path: flip, readOnly: true } }],
    } as unknown as KataSandboxSpec;
    const views = new RootfsViews({ root: path.join(base, 'views'), lowerRoots: [] });
    const countFile = path.join(base, 'tree.count');
    const flipper = startFlipper(root, 'tree', countFile);
    const outcome = { inside: 0, refused: 0, outside: 0 };
    let attemptsWithFlips = 0;
    try {
      while (flips(countFile) === 0) await new Promise((r) => setTimeout(r, 10));
      for (let i = 0; i < ATTEMPTS; i++) {
        const uid = `race-${i}`;
        const shareDir = path.join(base, 'shared', uid);
        mkdirSync(shareDir, { recursive: true });
        const recorded: string[] = [];
        const before = flips(countFile);
        try {
          const checked = await timed(() => checkSandboxHostPaths(fs, spec, roots));
          await timed(() =>
            prepareShareMounts({
              hostFs: fs,
              views,
              uid,
              spec,
              checked,
              shareDir,
              record: async (t) => void recorded.push(t),
            }),
          );
          const seen = [
            readFileSync(path.join(shareDir, 'c/rootfs/marker'), 'utf8'),
            readFileSync(path.join(shareDir, '_volumes/v/marker'), 'utf8'),
          ];
          if (seen.every((m) => m === INSIDE)) outcome.inside++;
          else outcome.outside++;
        } catch (err) {
          expect(err).toBeInstanceOf(HostPathError);
          expect((err as HostPathError).reason).toMatch(/^HostPath(NotAllowed|NotFound)$/);
          outcome.refused++;
        } finally {
          if (flips(countFile) > before) attemptsWithFlips++;
          await teardownShare(fs, shareDir, recorded);
          await views.teardown(uid);
        }
      }
    } finally {
      await stopFlipper(flipper);
    }
    console.log(
      `rows 2/3: ${flips(countFile)} flips; ${attemptsWithFlips}/${ATTEMPTS} preparations saw the path flip meanwhile; outcomes ${JSON.stringify(outcome)}`,
    );
    expect(outcome.outside).toBe(0);
    expect(attemptsWithFlips).toBeGreaterThanOrEqual(ATTEMPTS / 10);
    expect(outcome.inside).toBeGreaterThan(0);
    expect(outcome.refused).toBeGreaterThan(0);
    // Nothing stayed mounted, and the outside dir was never written (the rootfs view is read-only).
    expect(mountsUnder(await readMountInfo(), base)).toEqual([]);
    expect(readdirSync(path.join(outside, 'tree'))).toEqual(['marker']);
    const perCall = helperMillis.reduce((a, b) => a + b, 0) / helperMillis.length;
    console.log(
      `helper calls: ${helperMillis.length} timed steps, mean ${perCall.toFixed(1)} ms per step (check, or share preparation)`,
    );
  });
});

describe('the guest plants symlinks in the share (row 5)', () => {
  it('a symlink at <share>/<container> never redirects the late rootfs bind; teardown leaves nothing', async () => {
    const views = new RootfsViews({ root: path.join(base, 'views5'), lowerRoots: [] });
    const rootfsDir = path.join(root, 'rootfs5');
    mkdirSync(path.join(rootfsDir, 'bin'), { recursive: true });
    writeFileSync(path.join(rootfsDir, 'marker'), INSIDE);
    const target = path.join(outside, 'victim5');
    mkdirSync(path.join(target, 'rootfs'), { recursive: true });
    const shareDir = path.join(base, 'shared5');
    mkdirSync(shareDir);
    const view = await views.prepareHostDir({
      sandboxUid: 'u5',
      container: 'c',
      hostFs: fs,
      sourceRoot: root,
      source: rootfsDir,
    });
    // What a compromised guest writes through 9p before the image's late bind lands.
    symlinkSync(target, path.join(shareDir, 'c'));
    const err = await bindIntoShare(fs, shareDir, {
      sourceRoot: views.root,
      source: view.merged,
      target: 'c/rootfs',
      readOnly: false,
    }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('ELOOP');
    expect(mountsUnder(await readMountInfo(), outside)).toEqual([]);
    expect(readdirSync(path.join(target, 'rootfs'))).toEqual([]);
    // Recorded before the attempt (as the runtime does): teardown copes with the symlink there.
    await teardownShare(fs, shareDir, [path.join(shareDir, 'c/rootfs')]);
    await views.teardown('u5');
    expect(existsSync(shareDir)).toBe(false);
    expect(existsSync(target)).toBe(true);
    expect(mountsUnder(await readMountInfo(), base)).toEqual([]);
  });

  it('after the bind, a renamed dir and a symlink in its old place: teardown finds the mount by mountinfo and unmounts it', async () => {
    const vol = path.join(root, 'vol5b');
    mkdirSync(vol);
    const shareDir = path.join(base, 'shared5b');
    mkdirSync(shareDir);
    await bindIntoShare(fs, shareDir, {
      sourceRoot: root,
      source: vol,
      target: '_volumes/v',
      readOnly: true,
    });
    // The guest renames the directory holding the mount and puts a symlink out in its place.
    sh(['mv', path.join(shareDir, '_volumes'), path.join(shareDir, 'moved')]);
    symlinkSync(outside, path.join(shareDir, '_volumes'));
    await teardownShare(fs, shareDir, [path.join(shareDir, '_volumes/v')]);
    expect(mountsUnder(await readMountInfo(), shareDir)).toEqual([]);
    expect(existsSync(shareDir)).toBe(false);
    expect(existsSync(outside)).toBe(true);
    expect(existsSync(vol)).toBe(true);
  });
});

describe('block devices only under the device roots (row 8)', () => {
  it('a block device node under the host-path roots is refused; a regular file under the device roots too', async () => {
    const devs = path.join(base, 'devs');
    mkdirSync(devs, { recursive: true });
    // A node of the loop driver's first device (never opened here: the check refuses it).
    sh(['mknod', path.join(root, 'fake-loop'), 'b', '7', '0']);
    sh(['mknod', path.join(devs, 'loop-ok'), 'b', '7', '0']);
    writeFileSync(path.join(devs, 'plain.img'), 'x');
    writeFileSync(path.join(root, 'data.img'), 'x');
    const refusal = async (spec: object): Promise<HostPathError> => {
      const err = await checkSandboxHostPaths(fs, spec as KataSandboxSpec, roots).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(HostPathError);
      return err as HostPathError;
    };
    const asDevice = (p: string) => ({
      containers: [{ name: 'c', devices: [{ hostPath: p, containerPath: '/dev/x' }] }],
    });
    const asRootfs = (p: string) => ({
      containers: [{ name: 'c', rootfs: { block: { path: p } } }],
    });

    const e1 = await refusal(asDevice(path.join(root, 'fake-loop')));
    expect(e1.reason).toBe('HostPathNotAllowed');
    expect(e1.message).toContain('spec.containers[0].devices[0].hostPath');
    const e2 = await refusal(asRootfs(path.join(root, 'fake-loop')));
    expect(e2.reason).toBe('HostPathNotAllowed');
    expect(e2.message).toContain('spec.containers[0].rootfs.block.path');
    expect(e2.message).toContain('block devices are only allowed under the device roots');
    const e3 = await refusal(asRootfs(path.join(devs, 'plain.img')));
    expect(e3.reason).toBe('HostPathNotAllowed');
    expect(e3.message).toContain('image files are only allowed under the host path roots');
    const e4 = await refusal(asDevice(path.join(root, 'data.img')));
    expect(e4.reason).toBe('HostPathNotAllowed');
    // Neither a file nor a block device anywhere: InvalidBlockDevice, as before.
    const e5 = await refusal(asRootfs(root));
    expect(e5.reason).toBe('InvalidBlockDevice');
    // Allowed: a device node under the device roots, an image under the host-path roots.
    const ok = await checkSandboxHostPaths(
      fs,
      {
        containers: [
          {
            name: 'c',
            rootfs: { block: { path: path.join(root, 'data.img') } },
            devices: [{ hostPath: path.join(devs, 'loop-ok'), containerPath: '/dev/x' }],
          },
        ],
      } as unknown as KataSandboxSpec,
      roots,
    );
    expect([...ok.values()].map((c) => [c.kind, c.type, c.root])).toEqual([
      ['blockSource', 'file', root],
      ['device', 'block', devs],
    ]);
  });
});

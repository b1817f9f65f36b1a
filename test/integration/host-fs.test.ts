// kata-host-fs (host-fs/) on the real kernel, through the node agent's wrapper
// (src/node-agent/host-fs/): paths opened beneath their roots, descriptors handed to a program,
// bind mounts made from the checked handle and targets never followed through a symlink. The two
// races of issue 14 run for real: a second process flips a directory between a real one and a
// symlink out of the root while the helper opens a device path (exec) or a volume (bind) below
// it, and the outside object must never come through. Needs root (mounts, loop devices); no
// control plane.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { release } from 'node:os';
import path from 'node:path';
import { HostPathError } from '../../src/node-agent/storage/host-paths.js';
import {
  HostFsError,
  bindBeneath,
  checkBeneath,
  execWithFdsArgv,
  parseHostFsError,
  probeHostFs,
  unmountBeneath,
  type AllowedRoot,
  type HostFs,
} from '../../src/node-agent/host-fs/index.js';
import { removeScratch } from '../e2e/sandbox-api.js';
import { REPO_ROOT } from './cluster.js';
import { builtHostFsBinary, hostFsBinaryPath } from './host-fs-binary.js';

const ATTEMPTS = 200;

let hostFs: HostFs;
let base = '';
const loops: string[] = [];

/** A loop device over a small file of its own. */
function makeLoop(name: string): string {
  const img = path.join(base, `${name}.img`);
  writeFileSync(img, Buffer.alloc(1024 * 1024));
  const dev = execFileSync('losetup', ['--find', '--show', img], {
    encoding: 'utf8',
    timeout: 10_000,
  }).trim();
  loops.push(dev);
  return dev;
}

interface Mount {
  id: number;
  mountPoint: string;
  options: string[];
}

/** /proc/self/mountinfo with each mount's id (the helper reports it). */
function mounts(): Mount[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const f = l.split(' ');
      return {
        id: Number(f[0]),
        mountPoint: (f[4] ?? '').replace(/\\([0-7]{3})/g, (_m, o: string) =>
          String.fromCharCode(parseInt(o, 8)),
        ),
        options: (f[5] ?? '').split(','),
      };
    });
}

const mountsAt = (p: string): Mount[] => mounts().filter((m) => m.mountPoint === p);
const mountsUnder = (p: string): Mount[] =>
  mounts().filter((m) => m.mountPoint === p || m.mountPoint.startsWith(`${p}/`));

/** Runs an argv; resolves with its exit code and output (never rejects on a non-zero exit). */
function run(argv: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      argv[0] ?? '',
      argv.slice(1),
      { timeout: 20_000, killSignal: 'SIGKILL', encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; killed?: boolean }) | null;
        if (e && (typeof e.code !== 'number' || e.killed)) reject(e);
        else resolve({ code: e ? (e.code as number) : 0, stdout, stderr });
      },
    );
  });
}

/**
 * A process that flips dir/name between the real directory it is now and a symlink to `outside`,
 * as fast as it can: rename the directory away, rename the symlink in, and back. Renames only,
 * so the name is always the directory, the symlink or (for an instant) missing. When the helper
 * creates a directory in that instant (bind creates missing target directories), that directory
 * is renamed aside (dir/name.made.N) and the flipping goes on.
 */
function startFlipper(dir: string, name: string, outside: string): ChildProcess {
  const script = `
    const fs = require('fs'), path = require('path');
    const [dir, name, outside] = process.argv.slice(1);
    const at = path.join(dir, name), real = at + '.real', link = at + '.link';
    let made = 0;
    const into = (from) => {
      try { fs.renameSync(from, at); }
      catch { fs.renameSync(at, at + '.made.' + made++); fs.renameSync(from, at); }
    };
    fs.symlinkSync(outside, link);
    for (;;) {
      fs.renameSync(at, real); into(link);
      fs.renameSync(at, link); into(real);
    }`;
  return spawn(process.execPath, ['-e', script, dir, name, outside], { stdio: 'ignore' });
}

async function stopFlipper(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await gone;
}

/** Expects a rejection with a HostPathError of this reason naming this field. */
async function expectHostPathError(
  p: Promise<unknown>,
  reason: string,
  field: string,
  words: RegExp,
): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HostPathError);
  expect(err).toMatchObject({ reason, field });
  expect((err as Error).message).toMatch(words);
  expect((err as Error).message.startsWith(`${field}: `)).toBe(true);
}

async function hostFsErrorOf(p: Promise<unknown>): Promise<HostFsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HostFsError);
  return err as HostFsError;
}

beforeAll(() => {
  // Built the way `make host-fs` builds it (a no-op when the sources did not change).
  const bin = hostFsBinaryPath();
  execFileSync(path.join(REPO_ROOT, 'hack/host-fs.sh'), [], {
    env: { ...process.env, CACHE_DIR: path.dirname(path.dirname(bin)) },
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 300_000,
  });
  hostFs = { binary: builtHostFsBinary() };
  base = realpathSync(mkdtempSync('/tmp/kata-host-fs-'));
}, 320_000);

afterAll(async () => {
  for (const dev of loops) {
    try {
      execFileSync('losetup', ['-d', dev], { timeout: 10_000 });
    } catch {
      // already detached
    }
  }
  if (base) await removeScratch(base); // kills the flippers, unmounts, removes the tree
}, 60_000);

it('probe: this kernel has every system call the helper uses', async () => {
  await expect(probeHostFs(hostFs)).resolves.toEqual({ kernel: release() });
  const bad = await probeHostFs({ binary: '/nonexistent/kata-host-fs' }).catch((e: unknown) => e);
  expect(bad).toBeInstanceOf(HostFsError);
});

describe('check: a path opened beneath the most specific allowed root', () => {
  let vols = '';
  let files = '';
  let outside = '';
  let loopDev = '';
  let roots: AllowedRoot[] = [];
  const field = 'spec.volumes[0].hostPath.path';

  beforeAll(() => {
    vols = path.join(base, 'check/vols');
    files = path.join(base, 'check/files');
    outside = path.join(base, 'check/outside');
    for (const d of [`${vols}/a/b`, files, outside]) mkdirSync(d, { recursive: true });
    writeFileSync(path.join(files, 'disk.img'), 'img');
    writeFileSync(path.join(outside, 'sentinel'), 'outside');
    symlinkSync('a/b', path.join(vols, 'inside-link')); // stays inside: followed
    symlinkSync('../outside', path.join(vols, 'escape')); // leads out: refused
    symlinkSync(path.join(vols, 'a'), path.join(vols, 'absolute')); // absolute: refused, even to inside
    symlinkSync('/proc/self/root', path.join(vols, 'magic'));
    execFileSync('mkfifo', [path.join(files, 'fifo')]);
    loopDev = makeLoop('check-loop');
    roots = [
      { root: vols, type: 'dir' },
      { root: files, type: 'file' },
      { root: '/dev', type: 'block' },
    ];
  });

  it('accepts a directory, a regular file and a block device beneath roots of their type', async () => {
    await expect(checkBeneath(hostFs, { field, path: `${vols}/a/b` }, roots)).resolves.toEqual({
      field,
      path: `${vols}/a/b`,
      root: vols,
      type: 'dir',
      resolved: `${vols}/a/b`,
    });
    await expect(
      checkBeneath(hostFs, { field, path: `${files}/disk.img` }, roots),
    ).resolves.toMatchObject({ root: files, type: 'file', resolved: `${files}/disk.img` });
    await expect(checkBeneath(hostFs, { field, path: loopDev }, roots)).resolves.toMatchObject({
      root: '/dev',
      type: 'block',
      resolved: loopDev,
    });
  });

  it('refuses a type its root does not admit (a directory as file, a character device, a FIFO)', async () => {
    const dirAsFile = path.join(files, 'sub');
    mkdirSync(dirAsFile);
    await expectHostPathError(
      checkBeneath(hostFs, { field, path: dirAsFile }, roots),
      'HostPathNotAllowed',
      field,
      /is a directory; beneath .* only a regular file is allowed/,
    );
    await expectHostPathError(
      checkBeneath(hostFs, { field, path: '/dev/null' }, roots),
      'HostPathNotAllowed',
      field,
      /is a character device; beneath \/dev only a block device is allowed/,
    );
    await expectHostPathError(
      checkBeneath(hostFs, { field, path: `${files}/fifo` }, roots),
      'HostPathNotAllowed',
      field,
      /is a FIFO/,
    );
  });

  it('follows a symlink that stays inside the root', async () => {
    await expect(
      checkBeneath(hostFs, { field, path: `${vols}/inside-link` }, roots),
    ).resolves.toMatchObject({ root: vols, type: 'dir', resolved: `${vols}/a/b` });
  });

  it('refuses a symlink or .. leading out of the root, an absolute symlink, a magic link', async () => {
    for (const p of [
      `${vols}/escape`,
      `${vols}/escape/sentinel`,
      `${vols}/a/../../outside`,
      `${files}/../vols/a`,
      `${vols}/absolute`,
      `${vols}/magic`,
    ]) {
      await expectHostPathError(
        checkBeneath(hostFs, { field, path: p }, roots),
        'HostPathNotAllowed',
        field,
        /resolves outside its root/,
      );
    }
    // A /proc magic link as the path itself, beneath a root that holds it: never followed.
    await expectHostPathError(
      checkBeneath(hostFs, { field, path: '/proc/self/root' }, [
        { root: '/proc/self', type: 'dir' },
      ]),
      'HostPathNotAllowed',
      field,
      /symlink that is not allowed here \(or a \/proc magic link/,
    );
  });

  it('refuses a relative path, a path under no root; reports a missing one as not found', async () => {
    await expectHostPathError(
      checkBeneath(hostFs, { field, path: 'srv/a' }, roots),
      'HostPathNotAllowed',
      field,
      /is not an absolute path/,
    );
    await expectHostPathError(
      checkBeneath(hostFs, { field, path: `${outside}/sentinel` }, roots),
      'HostPathNotAllowed',
      field,
      /is not under any allowed root/,
    );
    await expectHostPathError(
      checkBeneath(hostFs, { field, path: `${vols}/nope` }, roots),
      'HostPathNotFound',
      field,
      /does not exist/,
    );
  });

  it('tries the most specific root first, then the wider ones', async () => {
    const disks = path.join(vols, 'a');
    const nested: AllowedRoot[] = [
      { root: vols, type: 'dir' },
      { root: disks, type: 'file' },
    ];
    // vols/a/b is a directory: not admitted beneath vols/a (files only), admitted beneath vols.
    await expect(
      checkBeneath(hostFs, { field, path: `${disks}/b` }, nested),
    ).resolves.toMatchObject({ root: vols, type: 'dir' });
  });
});

describe('exec: descriptors handed to the program', () => {
  let root = '';
  beforeAll(() => {
    root = path.join(base, 'exec/root');
    mkdirSync(root, { recursive: true });
    writeFileSync(path.join(root, 'ro.txt'), 'read me');
    writeFileSync(path.join(root, 'rw.txt'), 'before');
    symlinkSync('/etc/passwd', path.join(root, 'escape'));
    execFileSync('mkfifo', [path.join(root, 'fifo')]);
  });

  it('opens each path at its descriptor, read-only or read-write, and runs the program', async () => {
    const argv = execWithFdsArgv(
      hostFs,
      [
        { fd: 3, root, path: `${root}/ro.txt`, type: 'file', readOnly: true },
        { fd: 7, root, path: `${root}/rw.txt`, type: 'file', readOnly: false },
      ],
      ['sh', '-c', 'cat <&3; echo after >&7; echo " $$"'],
    );
    const r = await run(argv);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^read me \d+\n$/);
    expect(readFileSync(`${root}/rw.txt`, 'utf8')).toBe('after\n');
  });

  it("the program gets the descriptors asked for and none of the helper's own", async () => {
    const listFds = ['sh', '-c', 'ls /proc/$$/fd'];
    const fdsOf = (out: string): number[] =>
      out
        .split('\n')
        .filter(Boolean)
        .map(Number)
        .sort((a, b) => a - b);
    const direct = fdsOf((await run(listFds)).stdout);
    const r = await run(
      execWithFdsArgv(
        hostFs,
        [
          { fd: 3, root, path: `${root}/ro.txt`, type: 'file', readOnly: true },
          { fd: 12, root, path: `${root}/rw.txt`, type: 'file', readOnly: true },
        ],
        listFds,
      ),
    );
    expect(r.code).toBe(0);
    const extra = fdsOf(r.stdout).filter((fd) => !direct.includes(fd));
    expect(extra).toEqual([3, 12]);
  });

  it('the read-only descriptor cannot be written', async () => {
    const r = await run(
      execWithFdsArgv(
        hostFs,
        [{ fd: 3, root, path: `${root}/ro.txt`, type: 'file', readOnly: true }],
        ['sh', '-c', 'echo x >&3'],
      ),
    );
    expect(r.code).not.toBe(0);
    expect(readFileSync(`${root}/ro.txt`, 'utf8')).toBe('read me');
  });

  it('fails with 125 and a JSON error naming the path before the program runs', async () => {
    const marker = path.join(base, 'exec/ran');
    for (const [p, type, code] of [
      [`${root}/escape`, 'file', 'EXDEV'],
      [`${root}/fifo`, 'file', 'WRONG_TYPE'], // never opened for reading: no hang
      [`${root}`, 'file', 'WRONG_TYPE'],
      [`${root}/missing`, 'file', 'ENOENT'],
      ['/etc/passwd', 'file', 'NOT_BENEATH'],
    ] as const) {
      const r = await run(
        execWithFdsArgv(
          hostFs,
          [{ fd: 3, root, path: p, type, readOnly: true }],
          ['touch', marker],
        ),
      );
      expect({ p, code: r.code, error: parseHostFsError(r.stderr) }).toEqual({
        p,
        code: 125,
        error: { code, message: expect.stringContaining(p), path: p },
      });
      expect(existsSync(marker)).toBe(false);
    }
    const noProgram = await run(
      execWithFdsArgv(hostFs, [], ['kata-no-such-program-' + String(process.pid)]),
    );
    expect({ code: noProgram.code, error: parseHostFsError(noProgram.stderr)?.code }).toEqual({
      code: 125,
      error: 'ENOENT',
    });
  });

  it(`race: a device path whose parent flips to /dev never hands over the node's disk (${ATTEMPTS} attempts)`, async () => {
    // The tenant's device (allowed) and the "node's disk" (a second loop device in /dev).
    const tenantDev = makeLoop('tenant-disk');
    const nodeDisk = makeLoop('node-disk');
    // major:minor in hex, as stat(1) prints them
    const rdev = (p: string): string =>
      execFileSync('stat', ['-L', '-c', '%t:%T', p], { encoding: 'utf8' }).trim();
    const race = path.join(base, 'exec-race');
    const devRoot = path.join(race, 'devroot');
    const d = path.join(devRoot, 'd');
    mkdirSync(d, { recursive: true });
    // In the real directory, a node named like the node's disk but with the tenant's device.
    const name = path.basename(nodeDisk);
    const [major, minor] = rdev(tenantDev)
      .split(':')
      .map((h) => String(parseInt(h, 16)));
    execFileSync('mknod', [path.join(d, name), 'b', major ?? '', minor ?? '']);
    const target = path.join(d, name);
    const flipper = startFlipper(devRoot, 'd', '/dev');
    const seen = { inside: 0, escaped: 0, missing: 0, outside: 0, naiveFooled: 0 };
    const other: string[] = [];
    const [inside, nodeRdev] = [rdev(tenantDev), rdev(nodeDisk)];
    const nodeDiskIdentity = statSync(nodeDisk).rdev;
    try {
      for (let i = 0; i < ATTEMPTS; i++) {
        const r = await run(
          execWithFdsArgv(
            hostFs,
            [{ fd: 3, root: devRoot, path: target, type: 'block', readOnly: false }],
            ['stat', '-L', '-c', '%t:%T', '/proc/self/fd/3'],
          ),
        );
        if (r.code === 0) {
          const got = r.stdout.trim();
          if (got === inside) seen.inside++;
          else if (got === nodeRdev) seen.outside++;
          else other.push(got);
        } else {
          const code = parseHostFsError(r.stderr)?.code;
          if (code === 'EXDEV') seen.escaped++;
          else if (code === 'ENOENT') seen.missing++;
          else other.push(`${r.code} ${r.stderr}`);
        }
        // The check-then-use it replaces, against the same flipper: resolve, check, open again.
        try {
          const resolved = realpathSync(target);
          if (resolved.startsWith(`${devRoot}/`) && statSync(target).rdev === nodeDiskIdentity) {
            seen.naiveFooled++;
          }
        } catch {
          // missing at that instant
        }
      }
    } finally {
      await stopFlipper(flipper);
    }
    console.log(`exec race over ${ATTEMPTS} attempts: ${JSON.stringify(seen)}`);
    expect(seen.outside).toBe(0);
    expect(other).toEqual([]);
    // The race ran: the helper met the directory both as itself and as the symlink to /dev.
    expect(seen.inside).toBeGreaterThan(0);
    expect(seen.escaped).toBeGreaterThan(0);
  }, 600_000);
});

describe('exec --no-setid: the program cannot make set-ID files, device nodes or xattrs', () => {
  let dir = '';
  beforeAll(() => {
    dir = path.join(base, 'nosetid');
    mkdirSync(dir, { recursive: true });
  });

  // Each step prints its name and whether it worked (errno 1 is EPERM), so one run covers every
  // call; perl (Debian's required set) reaches mknodat and setxattr through syscall().
  const script = [
    'use Fcntl; my $d = shift;',
    'sub step { my ($name, $ok) = @_; print $name, " ", ($ok ? "ok" : "errno " . ($! + 0)), "\\n"; }',
    'step("create", sysopen(my $f, "$d/plain", O_CREAT | O_WRONLY, 0644));',
    'step("chmod-4755", chmod(04755, "$d/plain"));',
    'step("chmod-2755", chmod(02755, "$d/plain"));',
    'step("chmod-0755", chmod(0755, "$d/plain"));',
    'step("create-4755", sysopen(my $g, "$d/suid", O_CREAT | O_WRONLY, 04755));',
    'step("mkdir-2755", mkdir("$d/sgid-dir", 02755));',
    'step("mkdir-0755", mkdir("$d/dir", 0755));',
    // mknodat(AT_FDCWD, path, mode, dev) is 259 and setxattr 188 on x86_64.
    'step("mknod-char", syscall(259, -100, "$d/null", 020666, 0x103) == 0);',
    'step("mknod-block", syscall(259, -100, "$d/blk", 060600, 0x700) == 0);',
    'step("mkfifo", syscall(259, -100, "$d/fifo", 010644, 0) == 0);',
    'my ($xp, $xn, $xv) = ("$d/plain", "user.test", "1");',
    'step("setxattr", syscall(188, $xp, $xn, $xv, 1, 0) == 0);',
    'step("chown", chown(1000, 1000, "$d/plain"));',
    'step("symlink", symlink("plain", "$d/link"));',
    'step("rename", rename("$d/dir", "$d/dir2"));',
  ].join('\n');

  it('refuses set-ID modes (chmod, create, mkdir), device nodes and xattrs with EPERM; the rest works', async () => {
    const r = await run(
      execWithFdsArgv(hostFs, [], ['perl', '-e', script, dir], { noSetid: true }),
    );
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const steps = Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => [l.split(' ')[0], l.split(' ').slice(1).join(' ')]),
    );
    expect(steps).toEqual({
      create: 'ok',
      'chmod-4755': 'errno 1',
      'chmod-2755': 'errno 1',
      'chmod-0755': 'ok',
      'create-4755': 'errno 1',
      'mkdir-2755': 'errno 1',
      'mkdir-0755': 'ok',
      'mknod-char': 'errno 1',
      'mknod-block': 'errno 1',
      mkfifo: 'ok',
      setxattr: 'errno 1',
      chown: 'ok',
      symlink: 'ok',
      rename: 'ok',
    });
    // What the host holds: no set-ID bit and no device node anywhere.
    for (const name of readdirSync(dir)) {
      const st = lstatSync(path.join(dir, name));
      expect({ name, setid: (st.mode & 0o6000) !== 0 }).toEqual({ name, setid: false });
      expect({ name, device: st.isCharacterDevice() || st.isBlockDevice() }).toEqual({
        name,
        device: false,
      });
    }
    expect(existsSync(path.join(dir, 'suid'))).toBe(false);
  });

  // Appends to each file named, then prints the program's bounding capability set.
  const rewrite = [
    'for my $p (@ARGV) { open(my $f, ">>", $p) or die "$p: $!"; print $f "x"; close($f) or die; }',
    'open(my $s, "<", "/proc/self/status") or die; print grep { /^CapBnd:/ } <$s>;',
  ].join('\n');
  const CAP_FSETID = 4n;
  const CAP_MKNOD = 27n;
  const CAP_SETFCAP = 31n;
  const setidFiles = (tag: string): string[] =>
    [0o4755, 0o2755].map((mode) => {
      // Beside the share directory the first test scans for set-ID files, not in it.
      mkdirSync(`${dir}-rewrite`, { recursive: true });
      const p = path.join(`${dir}-rewrite`, `${tag}-${mode.toString(8)}`);
      writeFileSync(p, '#!/bin/sh\n');
      chmodSync(p, mode);
      return p;
    });

  it('a set-ID file already on the host loses its bits when the program writes it (CAP_FSETID, CAP_MKNOD, CAP_SETFCAP dropped)', async () => {
    const files = setidFiles('existing');
    const r = await run(
      execWithFdsArgv(hostFs, [], ['perl', '-e', rewrite, ...files], { noSetid: true }),
    );
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const bounding = BigInt(`0x${/CapBnd:\s*([0-9a-f]+)/.exec(r.stdout)?.[1] ?? 'x'}`);
    for (const cap of [CAP_FSETID, CAP_MKNOD, CAP_SETFCAP]) {
      expect({ cap, held: (bounding >> cap) & 1n }).toEqual({ cap, held: 0n });
    }
    for (const p of files) {
      expect({ p, mode: lstatSync(p).mode & 0o7777 }).toEqual({ p, mode: 0o755 });
    }
  });

  it('without --no-setid a root writer keeps the set-ID bits (the dropped capability is what clears them)', async () => {
    const files = setidFiles('unfiltered-existing');
    const r = await run(execWithFdsArgv(hostFs, [], ['perl', '-e', rewrite, ...files]));
    expect(r.code).toBe(0);
    expect(files.map((p) => lstatSync(p).mode & 0o7777)).toEqual([0o4755, 0o2755]);
  });

  it('without --no-setid the same program makes a set-ID file (the filter is what stops it)', async () => {
    const plain = path.join(dir, 'unfiltered');
    const r = await run(
      execWithFdsArgv(
        hostFs,
        [],
        [
          'perl',
          '-e',
          'open(my $f, ">", $ARGV[0]) or die; close($f); chmod(04755, $ARGV[0]) or die "chmod: $!"',
          plain,
        ],
      ),
    );
    expect(r.code).toBe(0);
    expect(lstatSync(plain).mode & 0o7777).toBe(0o4755);
  });
});

describe('bind and umount: mounts made from the checked handle, targets never followed', () => {
  let src = '';
  let share = '';
  let outside = '';
  beforeAll(() => {
    src = path.join(base, 'bind/src');
    share = path.join(base, 'bind/share');
    outside = path.join(base, 'bind/outside');
    for (const d of [`${src}/vol`, `${src}/empty`, share, `${outside}/dir`]) {
      mkdirSync(d, { recursive: true });
    }
    writeFileSync(path.join(src, 'vol/inside'), 'inside');
    writeFileSync(path.join(src, 'file.txt'), 'file content');
    writeFileSync(path.join(outside, 'sentinel'), 'outside');
    writeFileSync(path.join(outside, 'file'), 'outside file');
  });

  const bind = (source: string, target: string, readOnly: boolean, type: 'dir' | 'file' = 'dir') =>
    bindBeneath(hostFs, { sourceRoot: src, source, type, targetRoot: share, target, readOnly });

  it('a read-only bind has ro, nosuid, nodev in mountinfo and refuses writes; creates the target path', async () => {
    const r = await bind(`${src}/vol`, 'c1/rootfs', true);
    expect(r.target).toBe(`${share}/c1/rootfs`);
    const [m, ...more] = mountsAt(r.target);
    expect(more).toEqual([]);
    expect(m?.id).toBe(r.mountId);
    expect(m?.options).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
    expect(readFileSync(`${r.target}/inside`, 'utf8')).toBe('inside');
    expect(() => writeFileSync(`${r.target}/new`, 'x')).toThrow(/EROFS/);
    await expect(unmountBeneath(hostFs, share, 'c1/rootfs')).resolves.toBe(true);
    expect(mountsAt(r.target)).toEqual([]);
  });

  it('is idempotent: a second bind keeps the mount; --ro on a read-write one makes it read-only; another source there is refused', async () => {
    const first = await bind(`${src}/vol`, 'c2/data', false);
    expect(mountsAt(first.target)[0]?.options).toEqual(
      expect.arrayContaining(['rw', 'nosuid', 'nodev']),
    );
    const again = await bind(`${src}/vol`, 'c2/data', false);
    expect(again).toEqual(first);
    const ro = await bind(`${src}/vol`, 'c2/data', true);
    expect(ro.mountId).toBe(first.mountId);
    const all = mountsAt(first.target);
    expect(all).toHaveLength(1);
    expect(all[0]?.options).toContain('ro');
    // Something else than the source already mounted there is not silently kept.
    mkdirSync(path.join(src, 'other'), { recursive: true });
    const busy = await hostFsErrorOf(bind(`${src}/other`, 'c2/data', true));
    expect(busy.code).toBe('EBUSY');
    expect(mountsAt(first.target)).toHaveLength(1);
    await expect(unmountBeneath(hostFs, share, 'c2/data', { detach: true })).resolves.toBe(true);
    expect(mountsAt(first.target)).toEqual([]);
  });

  it('binds a file onto an empty regular file it creates', async () => {
    const r = await bind(`${src}/file.txt`, 'c3/etc/config', true, 'file');
    expect(lstatSync(r.target).isFile()).toBe(true);
    expect(readFileSync(r.target, 'utf8')).toBe('file content');
    expect(mountsAt(r.target)[0]?.options).toEqual(
      expect.arrayContaining(['ro', 'nosuid', 'nodev']),
    );
    await expect(unmountBeneath(hostFs, share, 'c3/etc/config')).resolves.toBe(true);
    expect(readFileSync(r.target, 'utf8')).toBe('');
  });

  it('umount of a non-mount or a missing path is a no-op', async () => {
    mkdirSync(path.join(share, 'plain'), { recursive: true });
    await expect(unmountBeneath(hostFs, share, 'plain')).resolves.toBe(false);
    await expect(unmountBeneath(hostFs, share, 'no/such/dir')).resolves.toBe(false);
  });

  it('refuses a source outside its root or of the wrong type, and a target with ..', async () => {
    symlinkSync(outside, path.join(src, 'escape'));
    expect((await hostFsErrorOf(bind(`${src}/escape`, 'x1', true))).code).toBe('EXDEV');
    expect((await hostFsErrorOf(bind(`${src}/file.txt`, 'x2', true))).code).toBe('WRONG_TYPE');
    expect((await hostFsErrorOf(bind(`${src}/vol`, '../x3', true))).code).toBe('USAGE');
    expect(existsSync(path.join(share, 'x1'))).toBe(false);
    expect(mountsUnder(share)).toEqual([]);
  });

  it('a guest-planted symlink in the target path is refused; nothing is created or mounted outside', async () => {
    symlinkSync(outside, path.join(share, 'p1')); // a directory of the target path
    mkdirSync(path.join(share, 'p2'));
    symlinkSync(path.join(outside, 'dir'), path.join(share, 'p2/rootfs')); // the target itself
    symlinkSync(path.join(outside, 'file'), path.join(share, 'p2/config')); // a file target
    symlinkSync('../../bind/outside', path.join(share, 'p3')); // relative, through ..
    for (const [target, type, source] of [
      ['p1/rootfs', 'dir', `${src}/vol`],
      ['p1/a/b/c', 'dir', `${src}/vol`],
      ['p2/rootfs', 'dir', `${src}/vol`],
      ['p2/config', 'file', `${src}/file.txt`],
      ['p3/rootfs', 'dir', `${src}/vol`],
    ] as const) {
      const err = await hostFsErrorOf(bind(source, target, false, type));
      expect({ target, code: err.code }).toEqual({ target, code: 'ELOOP' });
    }
    expect(readdirSync(outside).sort()).toEqual(['dir', 'file', 'sentinel']);
    expect(readdirSync(path.join(outside, 'dir'))).toEqual([]);
    expect(readFileSync(path.join(outside, 'file'), 'utf8')).toBe('outside file');
    expect(mountsUnder(outside)).toEqual([]);
    expect(mountsUnder(share)).toEqual([]);
  });

  it('umount through a planted symlink never unmounts the mount it points to', async () => {
    // A host mount outside the share (made with the helper, beneath the outside dir).
    const hostMount = await bindBeneath(hostFs, {
      sourceRoot: src,
      source: `${src}/vol`,
      type: 'dir',
      targetRoot: outside,
      target: 'dir',
      readOnly: true,
    });
    try {
      symlinkSync(outside, path.join(share, 'u1')); // share/u1/dir → the host mount
      symlinkSync(path.join(outside, 'dir'), path.join(share, 'u2')); // share/u2 → the host mount
      for (const target of ['u1/dir', 'u2']) {
        for (const detach of [false, true]) {
          const err = await hostFsErrorOf(unmountBeneath(hostFs, share, target, { detach }));
          expect({ target, detach, code: err.code }).toEqual({ target, detach, code: 'ELOOP' });
        }
      }
      expect(mountsAt(hostMount.target).map((m) => m.id)).toEqual([hostMount.mountId]);
    } finally {
      await unmountBeneath(hostFs, outside, 'dir', { detach: true });
    }
  });

  it(`race: a volume whose parent flips to a symlink out of the root never mounts the outside dir (${ATTEMPTS} attempts)`, async () => {
    const race = path.join(base, 'bind-race');
    const root = path.join(race, 'root');
    const flipDir = path.join(root, 'v');
    const outsideDir = path.join(race, 'outside');
    mkdirSync(path.join(flipDir, 'data'), { recursive: true });
    mkdirSync(path.join(outsideDir, 'data'), { recursive: true });
    writeFileSync(path.join(flipDir, 'data/inside'), '');
    writeFileSync(path.join(outsideDir, 'data/sentinel'), '');
    const insideIno = statSync(path.join(flipDir, 'data')).ino;
    const outsideIno = statSync(path.join(outsideDir, 'data')).ino;
    const raceShare = path.join(race, 'share');
    mkdirSync(raceShare);
    const flipper = startFlipper(root, 'v', outsideDir);
    const seen = { inside: 0, escaped: 0, missing: 0, outside: 0 };
    const other: string[] = [];
    try {
      for (let i = 0; i < ATTEMPTS; i++) {
        try {
          const r = await bindBeneath(hostFs, {
            sourceRoot: root,
            source: `${root}/v/data`,
            type: 'dir',
            targetRoot: raceShare,
            target: 'c/vol',
            readOnly: true,
          });
          const ino = statSync(r.target).ino;
          const entries = readdirSync(r.target);
          if (ino === insideIno && entries.join() === 'inside') seen.inside++;
          else if (ino === outsideIno || entries.includes('sentinel')) seen.outside++;
          else other.push(`${ino} ${entries.join()}`);
          expect(await unmountBeneath(hostFs, raceShare, 'c/vol')).toBe(true);
        } catch (err) {
          const code = (err as HostFsError).code;
          if (code === 'EXDEV') seen.escaped++;
          else if (code === 'ENOENT') seen.missing++;
          else other.push(String(err));
        }
      }
    } finally {
      await stopFlipper(flipper);
    }
    console.log(`bind race over ${ATTEMPTS} attempts: ${JSON.stringify(seen)}`);
    expect(seen.outside).toBe(0);
    expect(other).toEqual([]);
    expect(seen.inside).toBeGreaterThan(0);
    expect(seen.escaped).toBeGreaterThan(0);
    expect(mountsUnder(race)).toEqual([]);
  }, 600_000);

  it(`race: a target directory the guest flips to a symlink out of the share never gets a mount outside (${ATTEMPTS} attempts)`, async () => {
    const race = path.join(base, 'target-race');
    const raceShare = path.join(race, 'share');
    const outsideDir = path.join(race, 'outside');
    mkdirSync(path.join(raceShare, 'c1'), { recursive: true });
    mkdirSync(outsideDir, { recursive: true });
    const flipper = startFlipper(raceShare, 'c1', outsideDir);
    const seen = { mounted: 0, symlinkRefused: 0, missing: 0 };
    const other: string[] = [];
    try {
      for (let i = 0; i < ATTEMPTS; i++) {
        try {
          await bindBeneath(hostFs, {
            ...{ sourceRoot: src, source: `${src}/vol`, type: 'dir' },
            ...{ targetRoot: raceShare, target: `c1/r${i}`, readOnly: true },
          });
          seen.mounted++;
        } catch (err) {
          const code = (err as HostFsError).code;
          if (code === 'ELOOP') seen.symlinkRefused++;
          else if (code === 'ENOENT') seen.missing++;
          else other.push(String(err));
        }
      }
    } finally {
      await stopFlipper(flipper);
    }
    console.log(`target race over ${ATTEMPTS} attempts: ${JSON.stringify(seen)}`);
    // Every mount is inside the share's real directory (under whichever name the flipper left it).
    const made = mountsUnder(race).map((m) => m.mountPoint);
    expect(made.filter((m) => !m.startsWith(`${raceShare}/c1`))).toEqual([]);
    expect(made).toHaveLength(seen.mounted);
    expect(readdirSync(outsideDir)).toEqual([]);
    expect(other).toEqual([]);
    expect(seen.mounted).toBeGreaterThan(0);
    expect(seen.symlinkRefused).toBeGreaterThan(0);
    for (const m of made.reverse()) execFileSync('umount', [m], { timeout: 10_000 });
  }, 600_000);

  it(`race: umount of a target whose directory flips to a symlink never unmounts the host's mount (${ATTEMPTS} attempts)`, async () => {
    const race = path.join(base, 'umount-race');
    const raceShare = path.join(race, 'share');
    const outsideDir = path.join(race, 'outside');
    mkdirSync(path.join(raceShare, 'u/m'), { recursive: true });
    mkdirSync(outsideDir, { recursive: true });
    // The host's own mount, at outside/m: what share/u/m names while u is the symlink.
    const hostMount = await bindBeneath(hostFs, {
      ...{ sourceRoot: src, source: `${src}/vol`, type: 'dir' },
      ...{ targetRoot: outsideDir, target: 'm', readOnly: true },
    });
    const flipper = startFlipper(raceShare, 'u', outsideDir);
    const seen = { unmounted: 0, nothingThere: 0, symlinkRefused: 0 };
    const other: string[] = [];
    try {
      for (let i = 0; i < ATTEMPTS; i++) {
        // Mount the share's own u/m when u is the directory at that instant (else refused).
        await bindBeneath(hostFs, {
          ...{ sourceRoot: src, source: `${src}/vol`, type: 'dir' },
          ...{ targetRoot: raceShare, target: 'u/m', readOnly: true },
        }).catch(() => undefined);
        try {
          if (await unmountBeneath(hostFs, raceShare, 'u/m')) seen.unmounted++;
          else seen.nothingThere++;
        } catch (err) {
          if ((err as HostFsError).code === 'ELOOP') seen.symlinkRefused++;
          else other.push(String(err));
        }
        if (mountsAt(hostMount.target).length !== 1) {
          other.push(`attempt ${i}: the host mount is gone`);
          break;
        }
      }
    } finally {
      await stopFlipper(flipper);
    }
    console.log(`umount race over ${ATTEMPTS} attempts: ${JSON.stringify(seen)}`);
    expect(other).toEqual([]);
    expect(mountsAt(hostMount.target).map((m) => m.id)).toEqual([hostMount.mountId]);
    expect(seen.unmounted).toBeGreaterThan(0);
    expect(seen.symlinkRefused).toBeGreaterThan(0);
    for (const m of mountsUnder(race).reverse()) {
      execFileSync('umount', [m.mountPoint], { timeout: 10_000 });
    }
  }, 600_000);

  it('a read-only bind is never writable, not even at first: a concurrent writer never reaches the source', async () => {
    const target = path.join(share, 'w/vol');
    const empty = path.join(src, 'empty');
    // Writes as fast as it can into the target; before the mount they land in the share's own
    // directory, on the mount they must fail (EROFS), never land in the source.
    const writer = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('fs'); const t = process.argv[1];
         for (;;) { try { fs.writeFileSync(t + '/w', 'x'); } catch {} }`,
        target,
      ],
      { stdio: 'ignore' },
    );
    try {
      for (let i = 0; i < 50; i++) {
        await bind(empty, 'w/vol', true);
        // The writer's path walk can pin the mount for an instant (EBUSY); the product then
        // detaches lazily (storage/shared-dir.ts unmountAll), and so does this test.
        const unmounted = await unmountBeneath(hostFs, share, 'w/vol').catch((err: unknown) => {
          if ((err as HostFsError).code !== 'EBUSY') throw err;
          return unmountBeneath(hostFs, share, 'w/vol', { detach: true });
        });
        expect(unmounted).toBe(true);
      }
    } finally {
      await stopFlipper(writer);
    }
    expect(readdirSync(empty)).toEqual([]);
    // The writer did run (its file is in the share's own directory, under the mount point).
    expect(existsSync(path.join(target, 'w'))).toBe(true);
  }, 300_000);
});

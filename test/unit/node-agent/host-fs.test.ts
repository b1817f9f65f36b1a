// The pure half of the kata-host-fs wrapper: the command lines it builds and how it reads the
// helper's errors. (test/integration/host-fs.test.ts runs the real helper.)
import { describe, expect, it } from '@jest/globals';
import { HostPathError } from '../../../src/node-agent/storage/host-paths.js';
import {
  HostFsError,
  execWithFdsArgv,
  parseHostFsError,
} from '../../../src/node-agent/host-fs/index.js';
import { bindArgs, checkArgs, umountArgs } from '../../../src/node-agent/host-fs/argv.js';
import { hostPathReasonOf, toHostPathError } from '../../../src/node-agent/host-fs/errors.js';
import { runHostFs } from '../../../src/node-agent/host-fs/run.js';

const fs = { binary: '/opt/kata-host-fs' };

describe('execWithFdsArgv', () => {
  it('puts each open at its descriptor, then the program after --', () => {
    expect(
      execWithFdsArgv(
        fs,
        [
          { fd: 3, root: '/dev', path: '/dev/loop0', type: 'block', readOnly: false },
          { fd: 4, root: '/srv', path: '/srv/img:v1.raw', type: 'file', readOnly: true },
        ],
        ['qemu-system-x86_64', '-add-fd', 'fd=3,set=1', '--', '-x'],
      ),
    ).toEqual([
      '/opt/kata-host-fs',
      'exec',
      '--open=3=block:rw:/dev:/dev/loop0',
      '--open=4=file:ro:/srv:/srv/img:v1.raw',
      '--',
      'qemu-system-x86_64',
      '-add-fd',
      'fd=3,set=1',
      '--',
      '-x',
    ]);
  });

  it('refuses stdio descriptors, a descriptor twice, relative paths, roots with a colon, rw directories', () => {
    const open = { fd: 3, root: '/srv', path: '/srv/a', type: 'file', readOnly: true } as const;
    const bad = [
      [{ ...open, fd: 2 }],
      [{ ...open, fd: 3.5 }],
      [open, { ...open, path: '/srv/b' }],
      [{ ...open, path: 'srv/a' }],
      [{ ...open, root: 'srv' }],
      [{ ...open, root: '/a:b', path: '/a:b/c' }],
      [{ ...open, type: 'dir', readOnly: false }],
    ] as const;
    for (const opens of bad) expect(() => execWithFdsArgv(fs, opens, ['true'])).toThrow();
    expect(() => execWithFdsArgv(fs, [open], [])).toThrow(/no program/);
  });
});

describe('execWithFdsArgv with cgroups', () => {
  it('joins the cgroups first (--flag=value), before any open', () => {
    const open = {
      fd: 3,
      root: '/dev',
      path: '/dev/loop0',
      type: 'block',
      readOnly: false,
    } as const;
    expect(
      execWithFdsArgv(fs, [open], ['qemu'], {
        noSetid: true,
        cgroups: [
          '/sys/fs/cgroup/memory/kata-sandboxes/u1',
          '/sys/fs/cgroup/pids/kata-sandboxes/u1',
        ],
      }),
    ).toEqual([
      '/opt/kata-host-fs',
      'exec',
      '--no-setid',
      '--cgroup=/sys/fs/cgroup/memory/kata-sandboxes/u1',
      '--cgroup=/sys/fs/cgroup/pids/kata-sandboxes/u1',
      '--open=3=block:rw:/dev:/dev/loop0',
      '--',
      'qemu',
    ]);
  });

  it('refuses a relative cgroup directory', () => {
    expect(() => execWithFdsArgv(fs, [], ['qemu'], { cgroups: ['kata-sandboxes/u1'] })).toThrow(
      /not absolute/,
    );
  });
});

describe('the other command lines', () => {
  it('check: --flag=value (a path starting with - stays a value), each root once per type', () => {
    expect(
      checkArgs('-rf', [
        { root: '/srv/', type: 'dir' },
        { root: '/srv', type: 'dir' },
        { root: '/srv', type: 'file' },
        { root: '/dev', type: 'block' },
      ]),
    ).toEqual(['check', '--path=-rf', '--root=dir=/srv', '--root=file=/srv', '--root=block=/dev']);
    expect(() => checkArgs('/srv/a', [{ root: 'srv', type: 'dir' }])).toThrow(/not absolute/);
  });

  it('bind and umount', () => {
    expect(
      bindArgs({
        sourceRoot: '/srv',
        source: '/srv/vol',
        type: 'dir',
        targetRoot: '/run/share/u1',
        target: 'c1/rootfs/data',
        readOnly: true,
      }),
    ).toEqual([
      'bind',
      '--source-root=/srv',
      '--source=/srv/vol',
      '--type=dir',
      '--target-root=/run/share/u1',
      '--target=c1/rootfs/data',
      '--ro',
    ]);
    expect(umountArgs('/run/share/u1', 'c1/rootfs', true)).toEqual([
      'umount',
      '--target-root=/run/share/u1',
      '--target=c1/rootfs',
      '--detach',
    ]);
    expect(umountArgs('/r', 'x', false)).not.toContain('--detach');
  });
});

describe('parseHostFsError', () => {
  it('reads the JSON error line, past other stderr output', () => {
    expect(
      parseHostFsError(
        'warning: something\n{"code":"EXDEV","error":"\\"/srv/x\\" (beneath /srv): resolves outside its root","path":"/srv/x"}\n',
      ),
    ).toEqual({
      code: 'EXDEV',
      message: '"/srv/x" (beneath /srv): resolves outside its root',
      path: '/srv/x',
    });
    expect(parseHostFsError('{"code":"USAGE","error":"bad"}')).toEqual({
      code: 'USAGE',
      message: 'bad',
    });
  });

  it('is undefined for anything else', () => {
    for (const s of ['', 'qemu: could not open disk', '{"not":"ours"}', '{broken', '[1]', 'null']) {
      expect(parseHostFsError(s)).toBeUndefined();
    }
  });
});

describe('error mapping', () => {
  it('path codes become HostPathError naming the field; others HostFsError', () => {
    expect(hostPathReasonOf('EXDEV')).toBe('HostPathNotAllowed');
    expect(hostPathReasonOf('NOT_BENEATH')).toBe('HostPathNotAllowed');
    expect(hostPathReasonOf('NOT_ABSOLUTE')).toBe('HostPathNotAllowed');
    expect(hostPathReasonOf('ELOOP')).toBe('HostPathNotAllowed');
    expect(hostPathReasonOf('WRONG_TYPE')).toBe('HostPathNotAllowed');
    expect(hostPathReasonOf('ENOENT')).toBe('HostPathNotFound');
    expect(hostPathReasonOf('ENOTDIR')).toBe('HostPathNotFound');
    expect(hostPathReasonOf('EPERM')).toBeUndefined();

    const e = toHostPathError('spec.volumes[0].hostPath.path', {
      code: 'EXDEV',
      message: '"/srv/x" (beneath /srv): resolves outside its root',
    });
    expect(e).toBeInstanceOf(HostPathError);
    expect(e).toMatchObject({
      reason: 'HostPathNotAllowed',
      field: 'spec.volumes[0].hostPath.path',
    });
    expect(e.message).toBe(
      'spec.volumes[0].hostPath.path: "/srv/x" (beneath /srv): resolves outside its root',
    );
    const other = toHostPathError('f', { code: 'KERNEL_TOO_OLD', message: 'needs Linux 5.12' });
    expect(other).toBeInstanceOf(HostFsError);
    expect(other).toMatchObject({ code: 'KERNEL_TOO_OLD', message: 'needs Linux 5.12' });
  });
});

describe('runHostFs (with stand-in programs for the helper)', () => {
  it('kills a helper that overruns its timeout', async () => {
    const err = await runHostFs({ binary: 'sleep', timeoutMs: 100 }, ['10']).catch((e) => e);
    expect(err).toBeInstanceOf(HostFsError);
    expect(err).toMatchObject({ code: 'ETIMEDOUT', message: 'sleep 10: timed out after 100 ms' });
  });

  it('stops on abort with the signal reason', async () => {
    const ac = new AbortController();
    const reason = new Error('sandbox deleted');
    setTimeout(() => ac.abort(reason), 50);
    await expect(runHostFs({ binary: 'sleep' }, ['10'], ac.signal)).rejects.toBe(reason);
  });

  it('says when the helper cannot be run, and reads its JSON error or result', async () => {
    const missing = await runHostFs({ binary: '/nonexistent/kata-host-fs' }, ['check']).catch(
      (e) => e,
    );
    expect(missing).toBeInstanceOf(HostFsError);
    expect((missing as Error).message).toMatch(
      /cannot run the helper \(ENOENT\); see --host-fs-binary/,
    );
    await expect(
      runHostFs({ binary: 'sh' }, ['-c', 'echo \'{"code":"EXDEV","error":"out"}\' >&2; exit 5']),
    ).resolves.toEqual({ ok: false, failure: { code: 'EXDEV', message: 'out' } });
    await expect(runHostFs({ binary: 'echo' }, ['{"unmounted": true}'])).resolves.toEqual({
      ok: true,
      result: { unmounted: true },
    });
    await expect(runHostFs({ binary: 'sh' }, ['-c', 'exit 3'])).rejects.toBeInstanceOf(HostFsError);
  });
});

// The process side with a stand-in binary (no QEMU): parsing /proc, console tails, launch
// strategies, and stop's escalation down to SIGKILL with the process reaped.
import { afterAll, describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  QemuProcess,
  chooseLaunchStrategy,
  consoleTail,
  isSameProcess,
  launchCommand,
  parseProcStat,
  readProcStat,
  systemdScopeArgv,
} from '../../../src/node-agent/hypervisor/qemu-process.js';

const dir = mkdtempSync(path.join(tmpdir(), 'qemu-process-'));
const started: QemuProcess[] = [];
afterAll(async () => {
  await Promise.all(started.map((p) => p.stop({ powerdownGraceMs: 0, qmpTimeoutMs: 100 })));
  rmSync(dir, { recursive: true, force: true });
});

describe('/proc parsing', () => {
  it('takes state and start time after the last parenthesis (comm may hold spaces and parens)', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[0] = 'S';
    fields[19] = '123456';
    expect(parseProcStat(`42 (qemu) (x y)) ${fields.join(' ')}`)).toEqual({
      state: 'S',
      startTime: 123456,
    });
    expect(parseProcStat('garbage')).toBeUndefined();
  });

  it('knows this process, and tells a different start time apart', () => {
    const st = readProcStat(process.pid);
    expect(st).toBeDefined();
    expect(isSameProcess(process.pid, st!.startTime)).toBe(true);
    expect(isSameProcess(process.pid, st!.startTime + 1)).toBe(false);
    expect(isSameProcess(2 ** 22 + 1, 1)).toBe(false);
  });
});

describe('consoleTail', () => {
  it('returns the last N non-empty lines, without CRs', async () => {
    const f = path.join(dir, 'console.log');
    const lines = Array.from({ length: 30 }, (_, i) => `line ${i}`);
    writeFileSync(f, `${lines.join('\r\n')}\r\n\r\n`);
    await expect(consoleTail(f, 20)).resolves.toEqual(lines.slice(10));
    await expect(consoleTail(f, 3)).resolves.toEqual(['line 27', 'line 28', 'line 29']);
  });

  it('reads only the end of a large log and drops the cut first line', async () => {
    const f = path.join(dir, 'big.log');
    writeFileSync(f, `${'x'.repeat(100_000)}\nlast-but-one\nlast\n`);
    await expect(consoleTail(f, 20, 1024)).resolves.toEqual(['last-but-one', 'last']);
  });

  it('a missing log is an empty tail', async () => {
    await expect(consoleTail(path.join(dir, 'absent'), 20)).resolves.toEqual([]);
  });
});

describe('launch strategy', () => {
  it('systemd scope only when enabled and systemd runs the host', () => {
    const yes = (): boolean => true;
    const no = (): boolean => false;
    expect(chooseLaunchStrategy({ systemdScopeEnabled: true, exists: yes })).toBe('systemd-scope');
    expect(chooseLaunchStrategy({ systemdScopeEnabled: true, exists: no })).toBe('detached');
    expect(chooseLaunchStrategy({ systemdScopeEnabled: false, exists: yes })).toBe('detached');
  });

  it('builds the systemd-run argv around QEMU, and refuses a bad unit name', () => {
    expect(systemdScopeArgv('kata-abc', 'qemu-system-x86_64', ['-m', '512M'])).toEqual([
      '--scope',
      '--unit=kata-abc.scope',
      '--collect',
      '--quiet',
      '--property=KillMode=none',
      '--',
      'qemu-system-x86_64',
      '-m',
      '512M',
    ]);
    expect(() => systemdScopeArgv('kata abc', 'q', [])).toThrow(/unit name/);
  });
});

describe('launch command', () => {
  const fds = {
    hostFs: { binary: '/opt/kata-host-fs' },
    opens: [{ fd: 3, root: '/srv', path: '/srv/c.img', type: 'file' as const, readOnly: false }],
  };

  it("kata-host-fs exec comes last before QEMU (after nsenter), so the descriptors are QEMU's", () => {
    expect(
      launchCommand({
        qemuBinary: 'qemu',
        args: ['-m', '512M'],
        launchPrefix: ['nsenter', '--net=/run/netns/x', '--'],
        fds,
      }),
    ).toEqual({
      command: 'nsenter',
      args: [
        '--net=/run/netns/x',
        '--',
        '/opt/kata-host-fs',
        'exec',
        '--no-setid',
        '--open=3=file:rw:/srv:/srv/c.img',
        '--',
        'qemu',
        '-m',
        '512M',
      ],
    });
  });

  it('inside the systemd scope too: systemd-run … -- kata-host-fs exec … -- qemu', () => {
    expect(
      launchCommand({
        qemuBinary: 'qemu',
        args: ['-S'],
        fds,
        strategy: 'systemd-scope',
        unit: 'kata-u',
      }),
    ).toEqual({
      command: 'systemd-run',
      args: [
        '--scope',
        '--unit=kata-u.scope',
        '--collect',
        '--quiet',
        '--property=KillMode=none',
        '--',
        '/opt/kata-host-fs',
        'exec',
        '--no-setid',
        '--open=3=file:rw:/srv:/srv/c.img',
        '--',
        'qemu',
        '-S',
      ],
    });
  });

  it('without descriptors QEMU still runs under the helper, for the no-setid filter', () => {
    expect(launchCommand({ qemuBinary: 'qemu', args: ['-S'], fds: { ...fds, opens: [] } })).toEqual(
      { command: '/opt/kata-host-fs', args: ['exec', '--no-setid', '--', 'qemu', '-S'] },
    );
  });

  it('without the helper at all QEMU runs directly', () => {
    expect(launchCommand({ qemuBinary: 'qemu', args: ['-S'] })).toEqual({
      command: 'qemu',
      args: ['-S'],
    });
  });
});

describe('QemuProcess with a stand-in binary', () => {
  const launch = (args: string[]): Promise<QemuProcess> =>
    QemuProcess.launch({
      qemuBinary: '/bin/sh',
      args,
      qmpSocket: path.join(dir, 'no-qmp.sock'),
      consoleLog: path.join(dir, 'c.log'),
      stderrLog: path.join(dir, 'qemu.log'),
      cleanupPaths: [path.join(dir, 'leftover.sock')],
    }).then((p) => {
      started.push(p);
      return p;
    });

  it('records pid + start time, runs in its own session, writes output to the log', async () => {
    const p = await launch(['-c', 'echo from-qemu; exec sleep 30']);
    expect(p.info.startTime).toBe(readProcStat(p.pid)?.startTime);
    expect(p.running).toBe(true);
    // Its own session: session id (field 6) is its own pid.
    const stat = (await import('node:fs')).readFileSync(`/proc/${p.pid}/stat`, 'utf8');
    const sid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3];
    expect(Number(sid)).toBe(p.pid);
    writeFileSync(path.join(dir, 'leftover.sock'), '');
    // No QMP socket: stop escalates to SIGKILL, reaps, and removes the leftovers.
    await expect(p.stop({ qmpTimeoutMs: 100 })).resolves.toBe('killed');
    await expect(p.exited).resolves.toEqual({ code: null, signal: 'SIGKILL' });
    expect(existsSync(`/proc/${p.pid}`)).toBe(false);
    expect(existsSync(path.join(dir, 'leftover.sock'))).toBe(false);
    await expect(p.stderrTail()).resolves.toContain('from-qemu');
  });

  it('an adopted process is found by pid + start time and its end is seen by polling', async () => {
    const p = await launch(['-c', 'exec sleep 30']);
    expect(QemuProcess.adopt({ ...p.info, startTime: p.info.startTime + 1 })).toBeUndefined();
    const adopted = QemuProcess.adopt(p.info);
    expect(adopted?.running).toBe(true);
    await expect(adopted!.stop({ qmpTimeoutMs: 100 })).resolves.toBe('killed');
    await p.exited;
    expect(isSameProcess(p.pid, p.info.startTime)).toBe(false);
  });

  it('stop on an exited process says so', async () => {
    const p = await launch(['-c', 'exit 3']);
    await expect(p.exited).resolves.toEqual({ code: 3, signal: null });
    await expect(p.stop()).resolves.toBe('already-exited');
  });

  it('a binary that cannot start rejects the launch', async () => {
    await expect(
      QemuProcess.launch({
        qemuBinary: '/nonexistent/qemu',
        args: [],
        qmpSocket: '/x',
        consoleLog: '/x',
        stderrLog: path.join(dir, 'q2.log'),
      }),
    ).rejects.toThrow(/ENOENT/);
  });
});

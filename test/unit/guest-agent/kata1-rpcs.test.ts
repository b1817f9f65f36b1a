// The Kata 1.x RPCs beyond a container's lifecycle, as pure rules and against temp dirs:
// ListProcesses' ps filtering, AddARPNeighbors' ip argv, CopyFile's parts, OnlineCPUMem's sysfs
// writes, MemHotplugByProbe's probe writes, SetGuestDateTime's date argv, ReseedRandomDev's write.
import { afterEach, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { arpNeighborArgs } from '../../../src/agent/guest/arp-neighbors.js';
import { copyFile } from '../../../src/agent/guest/copy-file.js';
import { GuestSystem } from '../../../src/agent/guest/guest-system.js';
import { filterPsOutput, psArgv } from '../../../src/agent/guest/process-list.js';
import { CopyFileRequest } from '../../../src/generated/agent.js';
import { ARPNeighbor, IPFamily } from '../../../src/generated/types.js';
import { ran } from './ran.js';

const dirs: string[] = [];
const temp = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'kata1-rpcs-'));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('ListProcesses', () => {
  it('keeps the header and the lines of the given pids, wherever the PID column is', () => {
    const ps =
      'UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:00 init\nroot 42 1 0 10:00 ? 00:00:00 sh\nroot 420 1 0 10:00 ? 00:00:00 sleep\n';
    expect(filterPsOutput(ps, [42, 7])).toBe(
      'UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:00 ? 00:00:00 sh\n',
    );
    expect(filterPsOutput('PID USER\n  5 root\n', [5])).toBe('PID USER\n  5 root\n');
    expect(() => filterPsOutput('USER CMD\n', [1])).toThrow(/no PID column/);
  });

  it('runs ps -ef unless told otherwise, refusing arguments that are not options', () => {
    expect(psArgv([])).toEqual(['ps', '-ef']);
    expect(psArgv(['-o', 'pid,comm'])).toEqual(['ps', '-o', 'pid,comm']);
    expect(() => psArgv(['-o', 'pid;reboot'])).toThrow(/^args\[1\]/);
  });
});

describe('AddARPNeighbors', () => {
  const n = (over: Partial<ARPNeighbor> = {}): ARPNeighbor =>
    ARPNeighbor.fromPartial({
      toIPAddress: { family: IPFamily.v4, address: '10.0.0.1', mask: '' },
      device: 'eth0',
      lladdr: '02:42:AC:11:00:02',
      state: 0x80,
      ...over,
    });

  it('builds ip neigh add with the lladdr, state and router flag', () => {
    expect(arpNeighborArgs(n(), 'n')).toEqual([
      'neigh',
      'add',
      '10.0.0.1',
      'dev',
      'eth0',
      'lladdr',
      '02:42:ac:11:00:02',
      'nud',
      'permanent',
    ]);
    expect(arpNeighborArgs(n({ lladdr: '', state: 0, flags: 0x80 }), 'n')).toEqual([
      'neigh',
      'add',
      '10.0.0.1',
      'dev',
      'eth0',
      'router',
    ]);
  });

  it.each<[string, Partial<ARPNeighbor>, RegExp]>([
    ['a bad device', { device: 'eth0 up' }, /^n\.device/],
    [
      'a bad address',
      { toIPAddress: { family: IPFamily.v4, address: '10.0.0', mask: '' } },
      /^n\.toIPAddress/,
    ],
    ['a bad MAC', { lladdr: '02:42' }, /^n\.lladdr/],
    ['two states at once', { state: 0x82 }, /^n\.state 130/],
    ['a proxy flag', { flags: 0x08 }, /^n\.flags 8/],
  ])('refuses %s', (_n, over, msg) => {
    expect(() => arpNeighborArgs(n(over), 'n')).toThrow(msg);
  });
});

describe('CopyFile', () => {
  const req = (root: string, over: Partial<CopyFileRequest>): CopyFileRequest =>
    CopyFileRequest.fromPartial({
      path: path.join(root, 'c1/etc/hosts'),
      fileSize: 11,
      fileMode: 0o640,
      dirMode: 0o750,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      ...over,
    });

  it('writes the parts into a temporary file and moves it into place once it is whole', async () => {
    const root = `${temp()}/`;
    await copyFile(req(root, { offset: 0, data: Buffer.from('hello ') }), root);
    expect(() => statSync(path.join(root, 'c1/etc/hosts'))).toThrow();
    await copyFile(req(root, { offset: 6, data: Buffer.from('world') }), root);
    const dest = path.join(root, 'c1/etc/hosts');
    expect(readFileSync(dest, 'utf8')).toBe('hello world');
    expect(statSync(dest).mode & 0o7777).toBe(0o640);
    expect(() => statSync(`${dest}.tmp`)).toThrow();
  });

  it('refuses a path outside its root, a part past the size, and a link at the temporary name', async () => {
    const root = `${temp()}/`;
    await expect(copyFile(req(root, { path: '/etc/passwd' }), root)).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: expect.stringMatching(/^path "\/etc\/passwd" escapes/),
    });
    await expect(
      copyFile(req(root, { offset: 8, data: Buffer.from('toolong') }), root),
    ).rejects.toThrow(/past file_size 11/);
    mkdirSync(path.join(root, 'c1/etc'), { recursive: true });
    const outside = path.join(temp(), 'victim');
    writeFileSync(outside, 'keep');
    symlinkSync(outside, path.join(root, 'c1/etc/hosts.tmp'));
    await expect(copyFile(req(root, { data: Buffer.from('x') }), root)).rejects.toThrow(/ELOOP/);
    expect(readFileSync(outside, 'utf8')).toBe('keep');
  });
});

describe('OnlineCPUMem, SetGuestDateTime, ReseedRandomDev', () => {
  function sysfs(): { cpuDir: string; memoryDir: string } {
    const d = temp();
    const entry = (dir: string, name: string, online: string): void => {
      mkdirSync(path.join(d, dir, name), { recursive: true });
      writeFileSync(path.join(d, dir, name, 'online'), online);
    };
    entry('cpu', 'cpu0', '1\n');
    entry('cpu', 'cpu1', '0\n');
    entry('cpu', 'cpu2', '0\n');
    entry('memory', 'memory0', '1\n');
    entry('memory', 'memory7', '0\n');
    return { cpuDir: path.join(d, 'cpu'), memoryDir: path.join(d, 'memory') };
  }
  const online = (dir: string, name: string): string =>
    readFileSync(path.join(dir, name, 'online'), 'utf8').trim();

  it('brings nb_cpus offline CPUs online, then the memory blocks unless cpu_only', async () => {
    const dirs = sysfs();
    const sys = new GuestSystem(dirs);
    await sys.onlineCpuMem({ wait: true, nbCpus: 1, cpuOnly: true });
    expect([online(dirs.cpuDir, 'cpu1'), online(dirs.cpuDir, 'cpu2')]).toEqual(['1', '0']);
    expect(online(dirs.memoryDir, 'memory7')).toBe('0');
    await sys.onlineCpuMem({ wait: true, nbCpus: 1, cpuOnly: false });
    expect([online(dirs.cpuDir, 'cpu2'), online(dirs.memoryDir, 'memory7')]).toEqual(['1', '1']);
  });

  it('refuses nb_cpus 0 with cpu_only, and fails when not enough CPUs come online', async () => {
    const sys = new GuestSystem(sysfs());
    await expect(sys.onlineCpuMem({ wait: true, nbCpus: 0, cpuOnly: true })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    await expect(sys.onlineCpuMem({ wait: true, nbCpus: 3, cpuOnly: true })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      message: 'only 2 of 3 CPUs could be brought online',
    });
  });

  it('writes each hot-added address to the memory probe file as 0x<hex>, in order', async () => {
    const dirs = sysfs();
    const probe = path.join(dirs.memoryDir, 'probe');
    writeFileSync(probe, '');
    await new GuestSystem(dirs).probeMemory([0x8000_0000, 0x1_0000_0000]);
    expect(readFileSync(probe, 'utf8')).toBe('0x80000000' + '0x100000000');
  });

  it('refuses MemHotplugByProbe on a kernel without the probe file, naming it', async () => {
    const dirs = sysfs();
    await expect(new GuestSystem(dirs).probeMemory([0x8000_0000])).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      message: `this guest kernel has no memory probe file (${path.join(dirs.memoryDir, 'probe')})`,
    });
    // Nothing to announce: nothing to refuse (1.x loops over none).
    await expect(new GuestSystem(dirs).probeMemory([])).resolves.toBeUndefined();
  });

  it('sets the clock with date to the nearest second, and writes the seed to the random device', async () => {
    const calls: string[][] = [];
    const randomDev = path.join(temp(), 'random');
    const sys = new GuestSystem({
      run: async (argv) => {
        calls.push([...argv]);
        return ran(argv);
      },
      randomDev,
    });
    await sys.setDateTime(1893456000, 600_000);
    expect(calls).toEqual([['date', '-u', '-s', '@1893456001']]);
    await expect(sys.setDateTime(1, 1_000_000)).rejects.toThrow(/^Usec/);
    await sys.reseedRandom(Buffer.from('seed'));
    expect(readFileSync(randomDev, 'utf8')).toBe('seed');
    await expect(sys.reseedRandom(Buffer.alloc(0))).rejects.toThrow(/data is empty/);
  });
});

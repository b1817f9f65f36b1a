// The VM cgroups of the node agent (src/node-agent/cgroups/) on this machine's real cgroupfs: one
// cgroup per VM in every mounted hierarchy, the memory limit set, a program started through
// `kata-host-fs exec --cgroup` running inside from its first instruction, the kernel's OOM kills
// counted, and everything removed again. Needs root; no control plane, no VM.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  cgroupHierarchies,
  type CgroupHierarchy,
} from '../../src/node-agent/cgroups/cgroup-hierarchies.js';
import { VmCgroups } from '../../src/node-agent/cgroups/vm-cgroups.js';
import { execWithFdsArgv } from '../../src/node-agent/host-fs/index.js';
import { readMountInfo } from '../../src/node-agent/storage/mountinfo.js';
import { createLogger } from '../../src/observability/logger.js';
import { builtHostFsBinary } from './host-fs-binary.js';

const execFileAsync = promisify(execFile);
const ROOT = '/sys/fs/cgroup';
// Its own parent, so nothing here can meet another test's (or a node agent's) VM cgroups.
const PARENT = `kata-test-${process.pid}/vms`;
const MiB = 1024 * 1024;

let hierarchies: CgroupHierarchy[];
let cgroups: VmCgroups;
let hostFs: { binary: string };

/** Runs argv through `kata-host-fs exec --cgroup …` (the way QEMU is started). */
function runInCgroups(dirs: string[], argv: string[]) {
  const [cmd, ...args] = execWithFdsArgv(hostFs, [], argv, { cgroups: dirs });
  return execFileAsync(cmd as string, args, { timeout: 60_000, encoding: 'utf8' });
}

beforeAll(async () => {
  hostFs = { binary: builtHostFsBinary() };
  hierarchies = cgroupHierarchies(await readMountInfo(), ROOT);
  cgroups = new VmCgroups({ root: ROOT, parent: PARENT, logger: createLogger('vm-cgroups-test') });
});

afterAll(() => {
  // Deepest first: uid dirs, then vms, then the test's top dir.
  for (const h of hierarchies) {
    const top = path.join(h.mountPoint, PARENT.split('/')[0] as string);
    const vms = path.join(h.mountPoint, PARENT);
    for (const d of existsSync(vms) ? readdirSync(vms, { withFileTypes: true }) : []) {
      if (d.isDirectory()) rmdirSync(path.join(vms, d.name));
    }
    for (const d of [vms, top]) if (existsSync(d)) rmdirSync(d);
  }
});

describe('VM cgroups on the real cgroupfs', () => {
  it('finds the hierarchies this machine mounts (memory among them)', () => {
    expect(hierarchies.length).toBeGreaterThan(0);
    const hasMemory = hierarchies.some(
      (h) => h.controllers.includes('memory') || (h.version === 2 && h.mountPoint === ROOT),
    );
    expect(hasMemory).toBe(true);
  });

  it('makes the cgroup in every hierarchy with the memory limit, idempotently', async () => {
    const dirs = await cgroups.create('uid-limit', 96 * MiB);
    expect(await cgroups.create('uid-limit', 96 * MiB)).toEqual(dirs);
    expect(dirs).toEqual(hierarchies.map((h) => path.join(h.mountPoint, PARENT, 'uid-limit')));
    for (const d of dirs) expect(existsSync(path.join(d, 'cgroup.procs'))).toBe(true);
    const memory = hierarchies.find((h) => h.controllers.includes('memory'));
    const limitFile = memory
      ? path.join(memory.mountPoint, PARENT, 'uid-limit', 'memory.limit_in_bytes')
      : path.join(ROOT, PARENT, 'uid-limit', 'memory.max');
    expect(Number(readFileSync(limitFile, 'utf8'))).toBe(96 * MiB);
    const cpuset = hierarchies.find((h) => h.controllers.includes('cpuset'));
    if (cpuset) {
      // an empty cpuset could not take a process
      const cpus = readFileSync(path.join(cpuset.mountPoint, PARENT, 'uid-limit', 'cpuset.cpus'));
      expect(String(cpus).trim()).not.toBe('');
    }
    await cgroups.remove('uid-limit');
    for (const d of dirs) expect(existsSync(d)).toBe(false);
  });

  it('runs a program started through kata-host-fs inside the VM cgroup of every hierarchy', async () => {
    const dirs = await cgroups.create('uid-run', 128 * MiB);
    const { stdout } = await runInCgroups(dirs, ['cat', '/proc/self/cgroup']);
    // /proc/self/cgroup: one line per hierarchy, "id:controllers:path" ("0::path" for v2)
    const lines = stdout.trim().split('\n');
    for (const h of hierarchies) {
      const key = h.version === 2 ? '' : h.controllers.join(',');
      const line = lines.find((l) => l.split(':')[1] === key);
      expect(line).toBeDefined();
      expect(line?.split(':').slice(2).join(':')).toBe(`/${PARENT}/uid-run`);
    }
    await cgroups.remove('uid-run');
    for (const d of dirs) expect(existsSync(d)).toBe(false);
  });

  it('refuses to join what is not a cgroup, before the program runs', async () => {
    const err = (await runInCgroups(['/tmp'], ['true']).catch((e: unknown) => e)) as {
      code?: number;
      stderr?: string;
    };
    expect(err.code).toBe(125);
    expect(JSON.parse(err.stderr ?? '{}')).toMatchObject({ code: 'WRONG_TYPE', path: '/tmp' });
  });

  it('counts the kernel OOM kill of a program that outgrows the limit', async () => {
    const dirs = await cgroups.create('uid-oom', 48 * MiB);
    expect(await cgroups.oomKills('uid-oom')).toBe(0);
    // Touches memory a MiB at a time until the cgroup's limit has it killed (no swap here).
    const grow = 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));';
    const err = (await runInCgroups(dirs, [process.execPath, '-e', grow]).catch(
      (e: unknown) => e,
    )) as { signal?: string };
    expect(err.signal).toBe('SIGKILL');
    expect(await cgroups.oomKills('uid-oom')).toBeGreaterThanOrEqual(1);
    await cgroups.remove('uid-oom');
    expect(await cgroups.oomKills('uid-oom')).toBe(undefined);
  });

  it('never removes a cgroup that still holds a process', async () => {
    const busy = await cgroups.create('uid-busy', 64 * MiB);
    const [cmd, ...args] = execWithFdsArgv(hostFs, [], ['sleep', '60'], { cgroups: busy });
    const sleeper = execFile(cmd as string, args);
    try {
      // until the helper has joined and exec'd sleep
      const procs = path.join(busy[0] as string, 'cgroup.procs');
      for (let i = 0; i < 100 && readFileSync(procs, 'utf8').trim() === ''; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(readFileSync(procs, 'utf8').trim()).toBe(String(sleeper.pid));
      await cgroups.remove('uid-busy');
      for (const d of busy) expect(existsSync(d)).toBe(true);
    } finally {
      sleeper.kill('SIGKILL');
      await new Promise((r) => sleeper.once('exit', r));
    }
    await cgroups.remove('uid-busy');
    for (const d of busy) expect(existsSync(d)).toBe(false);
  });
});

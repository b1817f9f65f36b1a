// GetOOMEvent's watcher against temp cgroup dirs: each oom_kill counted in a container's
// memory.events is answered once, in order, with that container's id; a cgroup learnt at start
// is still read after its init died; a cancelled wait rejects.
import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { OomEvents, oomKills } from '../../../src/agent/guest/oom-events.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function cgroups(ids: string[]): {
  dirOf: Map<string, string>;
  kills(id: string, n: number): void;
} {
  const root = mkdtempSync(path.join(tmpdir(), 'oom-events-'));
  dirs.push(root);
  const dirOf = new Map(ids.map((id) => [id, path.join(root, id)]));
  const kills = (id: string, n: number): void =>
    writeFileSync(
      path.join(dirOf.get(id)!, 'memory.events'),
      `low 0\nhigh 0\nmax ${n}\noom ${n}\noom_kill ${n}\noom_group_kill 0\n`,
    );
  for (const id of ids) {
    mkdirSync(dirOf.get(id)!);
    kills(id, 0);
  }
  return { dirOf, kills };
}

describe('oomKills', () => {
  it('reads the oom_kill line, 0 without one', () => {
    expect(oomKills('oom 3\noom_kill 2\noom_group_kill 0\n')).toBe(2);
    expect(oomKills('low 0\n')).toBe(0);
  });
});

describe('OomEvents', () => {
  it('answers each kill once, in order, with its container; waits while there is none', async () => {
    const cg = cgroups(['a', 'b']);
    let running = new Set(['a', 'b']);
    const oom = new OomEvents({
      ids: () => ['a', 'b'],
      cgroupDir: async (id) => (running.has(id) ? cg.dirOf.get(id) : undefined),
      intervalMs: 5,
    });
    await oom.track('a');
    await oom.track('b');
    const first = oom.next(new AbortController().signal);
    cg.kills('b', 1);
    expect(await first).toBe('b');
    // a's init was killed and it no longer runs: its cgroup, learnt at start, is still read.
    running = new Set(['b']);
    cg.kills('a', 2);
    const signal = new AbortController().signal;
    expect([await oom.next(signal), await oom.next(signal)]).toEqual(['a', 'a']);
  });

  it('a cgroup made anew at the same path counts from its own zero', async () => {
    const cg = cgroups(['a']);
    const oom = new OomEvents({
      ids: () => ['a'],
      cgroupDir: async (id) => cg.dirOf.get(id),
      intervalMs: 5,
    });
    cg.kills('a', 3);
    await oom.poll();
    const signal = new AbortController().signal;
    expect([await oom.next(signal), await oom.next(signal), await oom.next(signal)]).toEqual([
      'a',
      'a',
      'a',
    ]);
    cg.kills('a', 1);
    expect(await oom.next(signal)).toBe('a');
  });

  it('a cancelled wait rejects and takes no event', async () => {
    const cg = cgroups(['a']);
    const oom = new OomEvents({
      ids: () => ['a'],
      cgroupDir: async (id) => cg.dirOf.get(id),
      intervalMs: 5,
    });
    const ac = new AbortController();
    const waiting = oom.next(ac.signal);
    ac.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    cg.kills('a', 1);
    expect(await oom.next(new AbortController().signal)).toBe('a');
  });
});

import { describe, expect, it } from '@jest/globals';
import { SharedOps } from '../../../src/node-agent/images/shared-ops.js';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('SharedOps', () => {
  it('runs one operation per key for every caller meanwhile; other keys run on their own', async () => {
    const ops = new SharedOps<string, number>();
    const gate = deferred<number>();
    let started = 0;
    const a1 = ops.run('a', () => (started++, gate.promise));
    const a2 = ops.run('a', () => (started++, gate.promise));
    const b = ops.run('b', async () => 7);
    expect(await b).toBe(7);
    await Promise.resolve();
    expect(started).toBe(1);
    gate.resolve(42);
    expect(await Promise.all([a1, a2])).toEqual([42, 42]);
    // Once done, the key starts afresh.
    expect(await ops.run('a', async () => 1)).toBe(1);
    expect(ops.inFlight()).toEqual([]);
  });

  it('shares failures', async () => {
    const ops = new SharedOps<string, number>();
    const gate = deferred<number>();
    const p1 = ops.run('k', () => gate.promise);
    const p2 = ops.run('k', () => gate.promise);
    gate.reject(new Error('boom'));
    await expect(p1).rejects.toThrow('boom');
    await expect(p2).rejects.toThrow('boom');
  });

  it('lets one caller leave without cancelling the others, and cancels once all left', async () => {
    const ops = new SharedOps<string, string>();
    let opSignal: AbortSignal | undefined;
    const gate = deferred<string>();
    const c1 = new AbortController();
    const c2 = new AbortController();
    const p1 = ops.run('k', (s) => ((opSignal = s), gate.promise), c1.signal);
    const p2 = ops.run('k', () => gate.promise, c2.signal);
    await Promise.resolve();
    c1.abort(new Error('first gone'));
    await expect(p1).rejects.toThrow('first gone');
    expect(opSignal?.aborted).toBe(false);
    c2.abort(new Error('second gone'));
    await expect(p2).rejects.toThrow('second gone');
    expect(opSignal?.aborted).toBe(true);
    // A new caller does not join the cancelled operation.
    expect(await ops.run('k', async () => 'fresh')).toBe('fresh');
    gate.resolve('late');
  });

  it('refuses an already aborted signal without starting anything', async () => {
    const ops = new SharedOps<string, number>();
    let started = false;
    const c = new AbortController();
    c.abort(new Error('no'));
    await expect(ops.run('k', async () => ((started = true), 1), c.signal)).rejects.toThrow('no');
    expect(started).toBe(false);
  });
});

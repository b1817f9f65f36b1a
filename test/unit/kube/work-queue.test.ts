import { describe, expect, it } from '@jest/globals';
import { afterReconcile, WorkQueue, type ReconcileResult } from '../../../src/kube/work-queue.js';

const noJitter = () => 0;
const fast = { baseMs: 5, maxMs: 40, jitter: 0 };

/** A promise plus its resolver (Node 20 has no Promise.withResolvers). */
function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Poll until `cond` holds (no wall-clock assertions: only "eventually"). */
async function until(cond: () => boolean, what = 'condition', timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('afterReconcile', () => {
  const b = { baseMs: 100, maxMs: 1000, jitter: 0 };

  it('forgets failures on success and requeues when asked', () => {
    expect(afterReconcile({ ok: true }, 3, b)).toEqual({ outcome: 'success', failures: 0 });
    expect(afterReconcile({ ok: true, result: { requeueAfterMs: 500 } }, 3, b)).toEqual({
      outcome: 'requeue',
      failures: 0,
      requeueAfterMs: 500,
    });
  });

  it('backs off exponentially per failure', () => {
    const err = { ok: false as const, error: new Error('x') };
    expect(afterReconcile(err, 0, b, noJitter)).toEqual({
      outcome: 'error',
      failures: 1,
      requeueAfterMs: 100,
    });
    expect(afterReconcile(err, 1, b, noJitter).requeueAfterMs).toBe(200);
    expect(afterReconcile(err, 9, b, noJitter).requeueAfterMs).toBe(1000);
  });
});

describe('WorkQueue', () => {
  it('merges a key added many times while queued into one reconcile', async () => {
    const gate = deferred();
    const seen: string[] = [];
    const q = new WorkQueue({
      concurrency: 1,
      reconcile: async (key) => {
        if (key === 'blocker') await gate.promise;
        seen.push(key);
      },
    });
    q.add('blocker');
    for (let i = 0; i < 5; i++) q.add('ns/a');
    expect(q.depth).toBe(1);
    gate.resolve();
    await until(() => seen.length === 2);
    await q.shutdown();
    expect(seen).toEqual(['blocker', 'ns/a']);
    expect(q.metrics.adds).toBe(6);
  });

  it('holds keys while paused (deduplicated) and reconciles them once started', async () => {
    const seen: string[] = [];
    const q = new WorkQueue({
      paused: true,
      reconcile: async (key) => {
        seen.push(key);
      },
    });
    q.add('ns/a');
    q.add('ns/b');
    q.add('ns/a');
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([]);
    expect(q.depth).toBe(2);
    q.start();
    await until(() => seen.length === 2);
    await q.shutdown();
    expect(seen.sort()).toEqual(['ns/a', 'ns/b']);
  });

  it('never runs one key twice at once, and re-runs once after an add during processing', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const gate = deferred();
    const q = new WorkQueue({
      concurrency: 4,
      reconcile: async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        runs++;
        if (runs === 1) await gate.promise;
        running--;
      },
    });
    q.add('ns/a');
    await until(() => runs === 1);
    q.add('ns/a');
    q.add('ns/a');
    expect(q.inFlight).toBe(1);
    gate.resolve();
    await until(() => runs === 2 && running === 0);
    await q.shutdown();
    expect(maxRunning).toBe(1);
    expect(runs).toBe(2);
  });

  it('runs different keys concurrently, bounded by concurrency', async () => {
    let running = 0;
    let maxRunning = 0;
    const gate = deferred();
    const q = new WorkQueue({
      concurrency: 2,
      reconcile: async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await gate.promise;
        running--;
      },
    });
    for (const k of ['a', 'b', 'c', 'd']) q.add(k);
    await until(() => running === 2);
    expect(q.depth).toBe(2);
    gate.resolve();
    await until(() => q.metrics.reconciles === 4);
    await q.shutdown();
    expect(maxRunning).toBe(2);
  });

  it('retries a failing key with growing backoff, then resets it on success', async () => {
    const retries: Array<[number, number]> = [];
    let calls = 0;
    const q = new WorkQueue({
      backoff: fast,
      random: noJitter,
      hooks: { onRetry: (_k, attempt, delay) => retries.push([attempt, delay]) },
      reconcile: async () => {
        calls++;
        if (calls <= 3) throw new Error(`fail ${calls}`);
      },
    });
    q.add('ns/a');
    await until(() => calls === 4);
    await until(() => q.failureCount('ns/a') === 0);
    await q.shutdown();
    expect(retries).toEqual([
      [1, 5],
      [2, 10],
      [3, 20],
    ]);
    expect(q.metrics.retries).toBe(3);
  });

  it('requeues after requeueAfterMs, and addAfter keeps the earliest time', async () => {
    const seen: string[] = [];
    const q = new WorkQueue({
      reconcile: async (key): Promise<ReconcileResult> => {
        seen.push(key);
        return seen.length === 1 ? { requeueAfterMs: 5 } : {};
      },
    });
    q.add('ns/a');
    await until(() => seen.length === 2, 'requeue');
    q.addAfter('ns/b', 60_000);
    q.addAfter('ns/b', 5);
    await until(() => seen.length === 3, 'addAfter');
    expect(seen).toEqual(['ns/a', 'ns/a', 'ns/b']);
    await q.shutdown();
  });

  it('reports depth through its hook', async () => {
    const depths: number[] = [];
    const gate = deferred();
    const q = new WorkQueue({
      concurrency: 1,
      hooks: { onDepth: (d) => depths.push(d) },
      reconcile: () => gate.promise,
    });
    q.add('a');
    q.add('b');
    q.add('c');
    expect(q.depth).toBe(2);
    gate.resolve();
    await until(() => q.metrics.reconciles === 3);
    await q.shutdown();
    expect(depths).toContain(2);
    expect(depths.at(-1)).toBe(0);
  });

  it('shutdown drops queued work, refuses new work, and waits for in-flight reconciles', async () => {
    const gate = deferred();
    const seen: string[] = [];
    const q = new WorkQueue({
      concurrency: 1,
      reconcile: async (key) => {
        seen.push(key);
        await gate.promise;
      },
    });
    q.add('a');
    q.add('b');
    q.addAfter('c', 5);
    await until(() => seen.length === 1);
    let drained: boolean | undefined;
    const done = q.shutdown(5000).then((d) => (drained = d));
    q.add('d');
    await new Promise((r) => setTimeout(r, 20));
    expect(drained).toBeUndefined();
    gate.resolve();
    await done;
    expect(drained).toBe(true);
    expect(seen).toEqual(['a']);
  });

  it('shutdown gives up after its timeout and aborts the reconcile signal', async () => {
    let aborted = false;
    const q = new WorkQueue({
      reconcile: (_k, signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          });
        }),
    });
    q.add('a');
    await until(() => q.inFlight === 1);
    await expect(q.shutdown(10)).resolves.toBe(false);
    await until(() => aborted, 'abort');
  });
});

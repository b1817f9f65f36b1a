import { describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { WorkQueue } from '../../../src/kube/work-queue.js';
import { logOptions, sandboxFields } from '../../../src/observability/logger.js';
import { outsideReconcile } from '../../../src/observability/reconcile-context.js';

/** A logger of the project's shape writing its lines into `lines`. */
function capture(): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { log: pino(logOptions('kata-node-agent', 'info'), sink), lines };
}

const keysOf = (line: string): string[] => [...line.matchAll(/"(\w+)":/g)].map((m) => m[1] ?? '');

describe('log lines', () => {
  it('carry one key per field, the sandbox identity, and the level by name', () => {
    const { log, lines } = capture();
    const sandbox = log
      .child({ subsystem: 'images' })
      .child(sandboxFields({ namespace: 'team-a', name: 'web', uid: 'u-1' }));
    sandbox.warn({ container: 'main', reason: 'ErrImagePull' }, 'manifest unknown');
    log.info('started');
    expect(lines).toHaveLength(2);
    const [line] = lines;
    const keys = keysOf(line ?? '');
    expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([]);
    expect(JSON.parse(line ?? '{}')).toMatchObject({
      level: 'warn',
      component: 'kata-node-agent',
      subsystem: 'images',
      namespace: 'team-a',
      name: 'web',
      uid: 'u-1',
      container: 'main',
      msg: 'manifest unknown',
    });
    expect(JSON.parse(lines[1] ?? '{}')).toMatchObject({ level: 'info', msg: 'started' });
    expect(JSON.parse(lines[1] ?? '{}')).not.toHaveProperty('name');
  });
});

describe('reconcile ids', () => {
  it('every line written within a reconcile carries its key and id; work it lets go does not', async () => {
    const { log, lines } = capture();
    const released: Promise<void>[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      logger: log,
      reconcile: async (key) => {
        log.info('deciding');
        await Promise.resolve();
        log.child({ subsystem: 'deep' }).info('acting');
        released.push(
          outsideReconcile(async () => {
            await new Promise((r) => setTimeout(r, 5));
            log.info(`background of ${key}`);
          }),
        );
        return {};
      },
    });
    queue.add('ns/a');
    queue.add('ns/b');
    while (released.length < 2) await new Promise((r) => setTimeout(r, 5));
    await Promise.all(released);
    await queue.shutdown();
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, string>);
    const of = (msg: string, key: string) =>
      parsed.filter((p) => p['msg'] === msg && p['key'] === key);
    for (const key of ['ns/a', 'ns/b']) {
      const [deciding] = of('deciding', key);
      const [acting] = of('acting', key);
      expect(deciding?.['reconcileID']).toMatch(/^[0-9a-f-]{36}$/);
      expect(acting?.['reconcileID']).toBe(deciding?.['reconcileID']);
    }
    expect(of('deciding', 'ns/a')[0]?.['reconcileID']).not.toBe(
      of('deciding', 'ns/b')[0]?.['reconcileID'],
    );
    const background = parsed.filter((p) => p['msg']?.startsWith('background of'));
    expect(background).toHaveLength(2);
    for (const b of background) expect(b['reconcileID']).toBeUndefined();
  });
});

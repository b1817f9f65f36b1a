import { describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { logOptions, sandboxFields } from '../../../src/observability/logger.js';

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

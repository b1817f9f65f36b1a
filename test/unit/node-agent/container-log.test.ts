import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ContainerLog,
  rotationRenames,
  sandboxLogDir,
  splitLines,
} from '../../../src/node-agent/runtime/container-log.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'container-log-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('container log', () => {
  it('names the directory <ns>_<name>_<uid>', () => {
    expect(sandboxLogDir('/var/log/kata-sandboxes', { namespace: 'a', name: 'b', uid: 'c' })).toBe(
      '/var/log/kata-sandboxes/a_b_c',
    );
  });

  it('rotation renames oldest first', () => {
    expect(rotationRenames('/l', 3)).toEqual([
      { from: '/l.2', to: '/l.3' },
      { from: '/l.1', to: '/l.2' },
      { from: '/l', to: '/l.1' },
    ]);
    expect(rotationRenames('/l', 0)).toEqual([]);
  });

  it('splits lines across chunks', () => {
    expect(splitLines('ab', 'c\nde\nf')).toEqual({ lines: ['abc', 'de'], rest: 'f' });
  });

  it('rotates at the size cap, keeps maxFiles, and remembers the last lines', async () => {
    const file = path.join(dir, 'x', 'main.log');
    const log = new ContainerLog({ file, maxBytes: 100, maxFiles: 2 });
    for (let i = 0; i < 20; i++)
      void log.write(Buffer.from(`line ${String(i).padStart(2, '0')} ${'.'.repeat(20)}\n`));
    await log.flush();
    expect(existsSync(`${file}.1`)).toBe(true);
    expect(existsSync(`${file}.2`)).toBe(true);
    expect(existsSync(`${file}.3`)).toBe(false);
    expect(readFileSync(file, 'utf8').length).toBeLessThanOrEqual(100);
    expect(readFileSync(file, 'utf8')).toContain('line 19');
    const tail = await log.tail(2);
    expect(tail).toEqual([`line 18 ${'.'.repeat(20)}`, `line 19 ${'.'.repeat(20)}`]);
  });

  it('reads the tail back from the file when it wrote nothing itself', async () => {
    const file = path.join(dir, 'y', 'main.log');
    const a = new ContainerLog({ file, maxBytes: 1 << 20, maxFiles: 1 });
    await a.write(Buffer.from('one\ntwo\nthree\n'));
    const b = new ContainerLog({ file, maxBytes: 1 << 20, maxFiles: 1 });
    expect(await b.tail(2)).toEqual(['two', 'three']);
  });
});

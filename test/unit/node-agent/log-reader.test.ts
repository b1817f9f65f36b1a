import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readLog, tailOffset } from '../../../src/node-agent/stream/log-reader.js';
import { ContainerLog, previousLogFile } from '../../../src/node-agent/runtime/container-log.js';
import { readFileSync, existsSync } from 'node:fs';
import { LogRenderer } from '../../../src/node-agent/runtime/log-format.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'log-reader-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function all(gen: AsyncGenerator<Buffer>): Promise<string> {
  let s = '';
  for await (const c of gen) s += c.toString();
  return s;
}

const opts = (file: string, more: Partial<Parameters<typeof readLog>[0]> = {}) => ({
  file,
  follow: false,
  ended: () => true,
  signal: new AbortController().signal,
  pollMs: 5,
  ...more,
});

describe('tailOffset', () => {
  it('finds where the last n lines start, a last line without newline counting', () => {
    const b = Buffer.from('a\nb\nc\n');
    expect(b.subarray(tailOffset(b, 2)).toString()).toBe('b\nc\n');
    expect(tailOffset(b, 0)).toBe(b.length);
    expect(tailOffset(b, 9)).toBe(0);
    const open = Buffer.from('a\nb\nc');
    expect(open.subarray(tailOffset(open, 1)).toString()).toBe('c');
  });
});

describe('readLog', () => {
  it('reads all, the tail, at most limitBytes, and nothing for a missing file', async () => {
    const f = path.join(dir, 'c.log');
    writeFileSync(f, 'one\ntwo\nthree\n');
    expect(await all(readLog(opts(f)))).toBe('one\ntwo\nthree\n');
    expect(await all(readLog(opts(f, { tailLines: 1 })))).toBe('three\n');
    expect(await all(readLog(opts(f, { limitBytes: 6 })))).toBe('one\ntw');
    expect(await all(readLog(opts(path.join(dir, 'none.log'))))).toBe('');
  });

  it('tails a file bigger than one read window', async () => {
    const f = path.join(dir, 'big.log');
    const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i}`);
    writeFileSync(f, `${lines.join('\n')}\n`);
    expect(await all(readLog(opts(f, { tailLines: 15_000 })))).toBe(
      `${lines.slice(5_000).join('\n')}\n`,
    );
  });

  it('follows appends and a rotation, and ends once the run has ended and all is read', async () => {
    const f = path.join(dir, 'c.log');
    writeFileSync(f, 'a\n');
    let ended = false;
    const gen = readLog(opts(f, { follow: true, ended: () => ended }));
    const got: string[] = [];
    const next = async () => ((await gen.next()).value as Buffer | undefined)?.toString();
    got.push((await next()) ?? '');
    appendFileSync(f, 'b\n');
    got.push((await next()) ?? '');
    renameSync(f, `${f}.1`);
    writeFileSync(f, 'c\n');
    got.push((await next()) ?? '');
    appendFileSync(f, 'd\n');
    ended = true;
    got.push((await next()) ?? '');
    expect(await gen.next()).toEqual({ done: true, value: undefined });
    expect(got).toEqual(['a\n', 'b\n', 'c\n', 'd\n']);
  });

  it('a follower is woken by the write itself, not by its poll', async () => {
    const f = path.join(dir, 'c.log');
    writeFileSync(f, 'a\n');
    const abort = new AbortController();
    // A poll an hour apart: only the file's change can bring the next chunk within the test.
    const gen = readLog(
      opts(f, { follow: true, ended: () => false, signal: abort.signal, pollMs: 3_600_000 }),
    );
    expect((await gen.next()).value?.toString()).toBe('a\n');
    const pending = gen.next();
    appendFileSync(f, 'b\n');
    expect((await pending).value?.toString()).toBe('b\n');
    renameSync(f, `${f}.1`);
    writeFileSync(f, 'c\n');
    expect((await gen.next()).value?.toString()).toBe('c\n');
    const after = gen.next();
    appendFileSync(f, 'd\n');
    expect((await after).value?.toString()).toBe('d\n');
    abort.abort(new Error('done'));
    await expect(gen.next()).rejects.toThrow('done');
  });

  it('stops when cancelled', async () => {
    const f = path.join(dir, 'c.log');
    writeFileSync(f, 'a\n');
    const abort = new AbortController();
    const gen = readLog(opts(f, { follow: true, ended: () => false, signal: abort.signal }));
    await gen.next();
    const pending = gen.next();
    abort.abort(new Error('gone'));
    await expect(pending).rejects.toThrow('gone');
  });
});

describe('ContainerLog.newRun', () => {
  it("keeps the ended run's file as the previous log and drops its rotated files", async () => {
    const f = path.join(dir, 'main.log');
    const log = new ContainerLog({ file: f, maxBytes: 4, maxFiles: 2 });
    await log.write(Buffer.from('old1'));
    await log.write(Buffer.from('old2')); // rotates old1 to .1
    expect(existsSync(`${f}.1`)).toBe(true);
    await log.newRun();
    await log.write(Buffer.from('new'));
    expect(previousLogFile(f)).toBe(path.join(dir, 'main.previous.log'));
    // The files hold records (log-format.ts): their output, rendered back.
    const output = (file: string) => {
      const r = new LogRenderer({ timestamps: false });
      return Buffer.concat([r.push(readFileSync(file)), r.flush()]).toString();
    };
    expect(output(previousLogFile(f))).toBe('old2');
    expect(output(f)).toBe('new');
    expect(existsSync(`${f}.1`)).toBe(false);
    expect(await log.tail()).toEqual(['new']);
  });
});

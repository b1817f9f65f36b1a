import { describe, expect, it } from '@jest/globals';
import {
  LogRenderer,
  encodeChunk,
  parseRecord,
} from '../../../src/node-agent/runtime/log-format.js';

const T1 = '2026-12-04T10:00:01.000Z';
const T2 = '2026-12-04T10:00:02.000Z';

const render = (file: string, o: ConstructorParameters<typeof LogRenderer>[0], chunk = 7) => {
  const r = new LogRenderer(o);
  const b = Buffer.from(file);
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += chunk) out.push(r.push(b.subarray(i, i + chunk)));
  out.push(r.flush());
  return Buffer.concat(out).toString();
};

describe("the log file's records (kubelet's format)", () => {
  it('one record per line of output, P for output that has no newline yet', () => {
    expect(encodeChunk(Buffer.from('a\nb\n'), 'stdout', T1).toString()).toBe(
      `${T1} stdout F a\n${T1} stdout F b\n`,
    );
    expect(encodeChunk(Buffer.from('par'), 'stderr', T1).toString()).toBe(`${T1} stderr P par\n`);
    expect(encodeChunk(Buffer.from('\n'), 'stdout', T1).toString()).toBe(`${T1} stdout F \n`);
    expect(parseRecord(Buffer.from(`${T1} stderr P x y`))).toEqual({
      time: T1,
      ms: Date.parse(T1),
      stream: 'stderr',
      partial: true,
      content: Buffer.from('x y'),
    });
    // A line of a file written before records: output as it is, with no time.
    expect(parseRecord(Buffer.from('plain line'))).toEqual({
      partial: false,
      content: Buffer.from('plain line'),
    });
  });

  it('renders the output back, in any chunking: timestamps per line, since, limitBytes', () => {
    const file =
      encodeChunk(Buffer.from('one\ntw'), 'stdout', T1).toString() +
      encodeChunk(Buffer.from('o\nthree\n'), 'stderr', T2).toString();
    for (const chunk of [1, 7, 1000]) {
      expect(render(file, { timestamps: false }, chunk)).toBe('one\ntwo\nthree\n');
      expect(render(file, { timestamps: true }, chunk)).toBe(`${T1} one\n${T1} two\n${T2} three\n`);
      expect(render(file, { timestamps: false, sinceMs: Date.parse(T2) }, chunk)).toBe(
        'o\nthree\n',
      );
      expect(render(file, { timestamps: false, limitBytes: 6 }, chunk)).toBe('one\ntw');
    }
    expect(render('old\nfile', { timestamps: true })).toBe('old\nfile\n');
  });
});

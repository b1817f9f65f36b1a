// Read, write and wait semantics with real child processes (sh on the host).
import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import {
  exitStatus,
  GuestProcess,
  OutputBuffer,
  ProcessTable,
} from '../../../src/agent/guest/process-table.js';
import { StatusError } from '../../../src/agent/guest/status-error.js';

async function readAll(buf: OutputBuffer, len = 4): Promise<string> {
  let out = '';
  for (;;) {
    const b = await buf.read(len);
    if (b.length === 0) return out;
    expect(b.length).toBeLessThanOrEqual(len);
    out += b.toString();
  }
}

const started = async (args: string[]): Promise<GuestProcess> => {
  const p = new GuestProcess('c1', 'e1');
  await p.start('sh', ['-c', ...args]);
  return p;
};

describe('exitStatus', () => {
  it('is the code, or 128+N for signal N', () => {
    expect(exitStatus(3, null)).toBe(3);
    expect(exitStatus(null, 'SIGKILL')).toBe(137);
    expect(exitStatus(null, 'SIGTERM')).toBe(143);
  });
});

describe('OutputBuffer', () => {
  it('a read blocks until data arrives and returns at most len bytes', async () => {
    const b = new OutputBuffer();
    let got: Buffer | undefined;
    const pending = b.read(3).then((x) => (got = x));
    await new Promise((r) => setTimeout(r, 20));
    expect(got).toBeUndefined();
    b.push(Buffer.from('hello'));
    await pending;
    expect(got?.toString()).toBe('hel');
    expect((await b.read(10)).toString()).toBe('lo');
  });

  it('end of stream is an empty read, every time, after the buffer drained', async () => {
    const b = new OutputBuffer();
    b.push(Buffer.from('x'));
    b.end();
    expect((await b.read(10)).toString()).toBe('x');
    expect((await b.read(10)).length).toBe(0);
    expect((await b.read(10)).length).toBe(0);
  });

  it('a pending read returns empty when the stream ends', async () => {
    const b = new OutputBuffer();
    const pending = b.read(10);
    b.end();
    expect((await pending).length).toBe(0);
  });

  it('a read can be cancelled without losing data', async () => {
    const b = new OutputBuffer();
    const ac = new AbortController();
    const pending = b.read(10, ac.signal);
    ac.abort();
    await expect(pending).rejects.toMatchObject({ code: status.CANCELLED });
    b.push(Buffer.from('kept'));
    expect((await b.read(10)).toString()).toBe('kept');
  });
});

describe('GuestProcess', () => {
  it('stdout and stderr come back in small reads, then EOF; wait gives the code', async () => {
    const p = await started(['printf "hello\\nworld\\n"; printf oops >&2; exit 3']);
    expect(await readAll(p.stdout)).toBe('hello\nworld\n');
    expect(await readAll(p.stderr)).toBe('oops');
    expect(await p.wait()).toBe(3);
    expect(await p.wait()).toBe(3);
    expect((await p.stdout.read(10)).length).toBe(0);
  });

  it('WaitProcess after the exit, and reads after the exit, still work', async () => {
    const p = await started(['echo done']);
    await new Promise((r) => setTimeout(r, 300));
    expect(p.exited).toBe(true);
    expect(await p.wait()).toBe(0);
    expect(await readAll(p.stdout, 100)).toBe('done\n');
  });

  it('a read made before output blocks until the process writes', async () => {
    // The process writes only once the test lets it (a file appears): the read must still be
    // pending then, and get the line after.
    const gate = path.join(mkdtempSync(path.join(tmpdir(), 'pt-gate-')), 'go');
    const p = await started([`while [ ! -e '${gate}' ]; do sleep 0.02; done; echo late`]);
    let answered = false;
    const read = p.stdout.read(100).then((b) => {
      answered = true;
      return b;
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(answered).toBe(false);
    writeFileSync(gate, '');
    expect((await read).toString()).toBe('late\n');
    rmSync(path.dirname(gate), { recursive: true, force: true });
    expect((await p.stdout.read(100)).length).toBe(0);
  });

  it('stdin round-trips through cat; closing stdin ends it', async () => {
    const p = new GuestProcess('c1', 'cat');
    await p.start('cat', []);
    expect(await p.writeStdin(Buffer.from('ping\n'))).toBe(5);
    expect((await p.stdout.read(100)).toString()).toBe('ping\n');
    p.closeStdin();
    expect(await p.wait()).toBe(0);
    expect((await p.stdout.read(100)).length).toBe(0);
    await expect(p.writeStdin(Buffer.from('x'))).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
  });

  it('a process killed by a signal reports 128+N', async () => {
    const p = await started(['sleep 100']);
    expect(p.kill('SIGKILL')).toBe(true);
    expect(await p.wait()).toBe(137);
    expect(p.kill('SIGKILL')).toBe(false);
  });

  it('a reader does not hang when a grandchild keeps the pipe open after the exit', async () => {
    const p = await started(['echo parent; (sleep 2 &) ; exit 0']);
    expect(await p.wait()).toBe(0);
    expect(await readAll(p.stdout, 100)).toBe('parent\n');
  });

  it('a wait before start blocks until the process ran', async () => {
    const p = new GuestProcess('c1', 'c1');
    const waited = p.wait();
    await p.start('sh', ['-c', 'exit 7']);
    expect(await waited).toBe(7);
  });

  it('abandoning a never-started process releases waiters and readers', async () => {
    const p = new GuestProcess('c1', 'c1');
    const waited = p.wait();
    const read = p.stdout.read(10);
    p.abandon('container removed before it started');
    await expect(waited).rejects.toBeInstanceOf(StatusError);
    expect((await read).length).toBe(0);
  });

  it('a program that does not exist fails the start and exits 127', async () => {
    const p = new GuestProcess('c1', 'c1');
    await expect(p.start('/nonexistent/crun', [])).rejects.toMatchObject({
      code: status.INTERNAL,
    });
    expect(await p.wait()).toBe(127);
    expect(await readAll(p.stderr, 1000)).toContain('cannot start /nonexistent/crun');
  });

  it('large output is delivered in order through a paused pipe', async () => {
    const p = await started(['head -c 3000000 /dev/zero | tr "\\0" a']);
    await new Promise((r) => setTimeout(r, 200));
    let n = 0;
    for (;;) {
      const b = await p.stdout.read(65536);
      if (b.length === 0) break;
      n += b.length;
    }
    expect(n).toBe(3_000_000);
    expect(await p.wait()).toBe(0);
  });
});

describe('ProcessTable', () => {
  it('finds processes by ids and names unknown ids', () => {
    const t = new ProcessTable();
    const p = new GuestProcess('c1', 'e1');
    t.add(p);
    expect(t.get('c1', 'e1')).toBe(p);
    expect(() => t.get('c1', 'nope')).toThrow('exec_id "nope" not found in container "c1"');
    expect(() => t.add(new GuestProcess('c1', 'e1'))).toThrow(/already exists/);
    expect(t.ofContainer('c1')).toEqual([p]);
    t.removeContainer('c1');
    expect(t.has('c1', 'e1')).toBe(false);
  });
});

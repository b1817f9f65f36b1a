// The one command runner: argv in, exit status and captured output out; a deadline and
// cancellation kill the command; one error type says which of them ended it.
import { describe, expect, it } from '@jest/globals';
import { CommandError, runCommand, runCommandOk } from '../../../src/common/run-command.js';

describe('runCommand', () => {
  it('returns the exit status and output, feeding stdin when given', async () => {
    const r = await runCommand(['/bin/sh', '-c', 'cat; echo oops >&2; exit 3'], {
      timeoutMs: 10_000,
      input: 'hello',
    });
    expect(r).toMatchObject({
      code: 3,
      signal: null,
      stderr: 'oops\n',
      timedOut: false,
      aborted: false,
    });
    expect(r.stdout.toString()).toBe('hello');
  });

  it('kills at the deadline and on cancellation, and says which', async () => {
    const slow = ['/bin/sh', '-c', 'sleep 30'];
    const late = await runCommandOk(slow, { timeoutMs: 50 }).catch((e: unknown) => e);
    expect(late).toBeInstanceOf(CommandError);
    expect(late).toMatchObject({ timedOut: true, aborted: false, signal: 'SIGKILL' });
    expect((late as Error).message).toBe('/bin/sh -c sleep 30: timed out after 50 ms');
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error('stop')), 20);
    const cancelled = await runCommandOk(slow, { timeoutMs: 10_000, signal: ctl.signal }).catch(
      (e: unknown) => e,
    );
    expect(cancelled).toMatchObject({ aborted: true, message: '/bin/sh -c sleep 30: cancelled' });
    const before = await runCommand(slow, { timeoutMs: 10_000, signal: AbortSignal.abort() });
    expect(before).toMatchObject({ aborted: true, code: null });
  });

  it('names the command, its exit and the last lines of its output in the error', async () => {
    const e = await runCommandOk(
      ['/bin/sh', '-c', 'for i in 1 2 3 4 5 6; do echo line$i >&2; done; exit 1'],
      {
        timeoutMs: 10_000,
      },
    ).catch((x: unknown) => x);
    expect((e as Error).message).toBe(
      '/bin/sh -c for i in 1 2 3 4 5 6; do echo line$i >&2; done; exit 1: exited with code 1: line2; line3; line4; line5; line6',
    );
  });

  it('rejects when the program cannot be started', async () => {
    await expect(runCommand(['/nonexistent/tool'], { timeoutMs: 1_000 })).rejects.toThrow(/ENOENT/);
  });
});

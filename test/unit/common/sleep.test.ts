// The one abortable wait: sleep rejects when cancelled, pause returns early.
import { describe, expect, it } from '@jest/globals';
import { pause, sleep } from '../../../src/common/sleep.js';

describe('sleep', () => {
  it('resolves after the delay', async () => {
    await expect(sleep(1)).resolves.toBeUndefined();
  });

  it('rejects with the reason when aborted, before or during', async () => {
    const pre = new AbortController();
    pre.abort(new Error('pre'));
    await expect(sleep(10, pre.signal)).rejects.toThrow('pre');
    const ctl = new AbortController();
    const p = sleep(60_000, ctl.signal);
    ctl.abort(new Error('during'));
    await expect(p).rejects.toThrow('during');
  });

  it('pause returns as soon as the signal aborts, without rejecting', async () => {
    const ctl = new AbortController();
    const p = pause(60_000, ctl.signal);
    ctl.abort(new Error('stop'));
    await expect(p).resolves.toBeUndefined();
    await expect(pause(1)).resolves.toBeUndefined();
  });
});

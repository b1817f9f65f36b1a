import { describe, expect, it } from '@jest/globals';
import {
  pullGate,
  recordPullFailure,
  type PullBackoffState,
} from '../../../src/node-agent/images/pull-backoff.js';

describe('image pull backoff (kubelet: 10 s doubling to 300 s)', () => {
  it('doubles the delay up to the maximum', () => {
    let s: PullBackoffState | undefined;
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      s = recordPullFailure(s, 1000 * i, 'manifest unknown');
      delays.push(s.delayMs);
    }
    expect(delays).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
    expect(s?.failures).toBe(8);
  });

  it('gates attempts until the delay has passed, with ImagePullBackOff and the last message', () => {
    const s = recordPullFailure(undefined, 1_000, 'reading manifest 2: manifest unknown');
    expect(pullGate(undefined, 0, 'x')).toEqual({ pull: true });
    expect(pullGate(s, 5_000, 'r/x:2')).toEqual({
      pull: false,
      retryInMs: 6_000,
      reason: 'ImagePullBackOff',
      message: 'Back-off pulling image "r/x:2": reading manifest 2: manifest unknown',
    });
    expect(pullGate(s, 11_000, 'r/x:2')).toEqual({ pull: true });
  });

  it('starts over after a quiet spell of twice the maximum', () => {
    let s = recordPullFailure(undefined, 0, 'a');
    s = recordPullFailure(s, 10_000, 'b');
    expect(s.delayMs).toBe(20_000);
    s = recordPullFailure(s, 10_000 + 600_001, 'c');
    expect(s).toMatchObject({ failures: 1, delayMs: 10_000, message: 'c' });
  });

  it('takes other bounds', () => {
    const s = recordPullFailure(
      recordPullFailure(undefined, 0, 'a', { initialMs: 1, maxMs: 1 }),
      1,
      'b',
      {
        initialMs: 1,
        maxMs: 1,
      },
    );
    expect(s.delayMs).toBe(1);
  });
});

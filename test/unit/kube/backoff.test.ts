import { describe, expect, it } from '@jest/globals';
import { backoffDelay } from '../../../src/kube/backoff.js';

const opts = { baseMs: 100, maxMs: 1000, jitter: 0.5 };

describe('backoffDelay', () => {
  it('doubles from the base per attempt without jitter', () => {
    const noJitter = () => 0;
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, opts, noJitter))).toEqual([100, 200, 400, 800]);
  });

  it('caps at maxMs before jitter, and jitter only adds', () => {
    expect(backoffDelay(10, opts, () => 0)).toBe(1000);
    expect(backoffDelay(10, opts, () => 1)).toBe(1500);
    expect(backoffDelay(2, opts, () => 0.5)).toBe(250);
  });

  it('stays finite for huge attempt numbers and treats attempt < 1 as the first', () => {
    expect(backoffDelay(10_000, opts, () => 0)).toBe(1000);
    expect(backoffDelay(0, opts, () => 0)).toBe(100);
    expect(backoffDelay(-3, opts, () => 0)).toBe(100);
  });
});

import { describe, expect, it } from '@jest/globals';
import { chooseEvictions } from '../../../src/node-agent/images/lru.js';

const img = (digest: string, bytes: number, lastUsedMs: number, inUse = false) => ({
  digest,
  bytes,
  lastUsedMs,
  inUse,
});

describe('chooseEvictions', () => {
  it('evicts nothing under the limit', () => {
    expect(chooseEvictions([img('a', 10, 1), img('b', 10, 2)], 20)).toEqual([]);
  });

  it('evicts the least recently used first, only as many as needed', () => {
    const images = [img('a', 10, 3), img('b', 10, 1), img('c', 10, 2), img('d', 10, 4)];
    expect(chooseEvictions(images, 30)).toEqual(['b']);
    expect(chooseEvictions(images, 15)).toEqual(['b', 'c', 'a']);
  });

  it('never evicts an image in use, even when the cache stays over its limit', () => {
    const images = [img('a', 50, 1, true), img('b', 10, 2), img('c', 10, 3, true)];
    expect(chooseEvictions(images, 20)).toEqual(['b']);
    expect(chooseEvictions([img('a', 50, 1, true)], 0)).toEqual([]);
  });

  it('breaks ties by digest so the choice is stable', () => {
    expect(chooseEvictions([img('z', 10, 1), img('y', 10, 1)], 10)).toEqual(['y']);
  });
});

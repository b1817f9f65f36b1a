// The gaps of a reconnect storm, from a seed, so a failing storm can be replayed gap for gap: one
// in five exactly 0 ms, the rest spread over 0..maxGapMs. Shared by the storm of our own client
// (test/e2e/reconnect-storm.test.ts) and the one of the Kata 1.x client (test/peers/). Not a test
// file itself.

/** mulberry32: a small seeded PRNG. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` gaps in ms. */
export function reconnectGaps(seed: number, n: number, maxGapMs: number): number[] {
  const rnd = seededRandom(seed);
  return Array.from({ length: n }, () => (rnd() < 0.2 ? 0 : Math.floor(rnd() * (maxGapMs + 1))));
}

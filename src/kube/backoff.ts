// Exponential backoff with jitter: shared by the informer, the work queue
// and the Lease loops.

export interface BackoffOptions {
  /** Delay of the first retry. */
  baseMs: number;
  /** Upper bound before jitter. */
  maxMs: number;
  /** Fraction of the delay added at random, 0..1 (0.2 → up to +20 %). */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 60_000, jitter: 0.2 };

/** Delay before retry number `attempt` (1-based): base·2^(attempt−1), capped, plus jitter. */
export function backoffDelay(
  attempt: number,
  opts: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const n = Math.max(1, Math.floor(attempt));
  // 2^n overflows to Infinity for huge n; min() keeps it finite.
  const raw = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(n - 1, 52));
  return Math.round(raw * (1 + opts.jitter * random()));
}

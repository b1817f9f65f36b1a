// ImagePullBackOff as kubelet does it: after a failed pull the next attempt waits 10 s, doubling
// to at most 300 s; a success (or a long quiet spell) forgets the failures. The state is a plain
// value the node agent keeps per (sandbox, container). Pure.

export interface PullBackoffOptions {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_PULL_BACKOFF: PullBackoffOptions = { initialMs: 10_000, maxMs: 300_000 };

export interface PullBackoffState {
  failures: number;
  lastFailureMs: number;
  /** Wait after lastFailureMs before the next attempt. */
  delayMs: number;
  /** The last failure's message (the registry's words). */
  message: string;
}

/** The state after a failed attempt at `nowMs`. */
export function recordPullFailure(
  prev: PullBackoffState | undefined,
  nowMs: number,
  message: string,
  opts: PullBackoffOptions = DEFAULT_PULL_BACKOFF,
): PullBackoffState {
  // kubelet forgets a backoff entry untouched for twice the maximum.
  const stale = prev !== undefined && nowMs - prev.lastFailureMs > 2 * opts.maxMs;
  const delayMs =
    prev === undefined || stale ? opts.initialMs : Math.min(opts.maxMs, prev.delayMs * 2);
  return {
    failures: prev === undefined || stale ? 1 : prev.failures + 1,
    lastFailureMs: nowMs,
    delayMs,
    message,
  };
}

export type PullGate =
  { pull: true } | { pull: false; retryInMs: number; reason: 'ImagePullBackOff'; message: string };

/** May a pull be attempted now? If not: how long to wait, and the Waiting reason and message. */
export function pullGate(
  state: PullBackoffState | undefined,
  nowMs: number,
  image: string,
): PullGate {
  if (state === undefined) return { pull: true };
  const retryInMs = state.lastFailureMs + state.delayMs - nowMs;
  if (retryInMs <= 0) return { pull: true };
  return {
    pull: false,
    retryInMs,
    reason: 'ImagePullBackOff',
    message: `Back-off pulling image "${image}": ${state.message}`,
  };
}

// A keyed, level-triggered work queue (controller-runtime's model): repeat keys merge, one key is
// never reconciled twice at once, failures retry with per-key exponential backoff, success forgets.
import PQueue from 'p-queue';
import { inBackground } from '../common/background.js';
import type { Logger } from '../observability/logger.js';
import { createLogger } from '../observability/logger.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { inReconcile } from '../observability/reconcile-context.js';

/** What a reconcile may ask for on success. */
export interface ReconcileResult {
  /** Reconcile this key again after this delay (e.g. to watch a deadline). */
  requeueAfterMs?: number;
}

export type Reconciler = (key: string, signal: AbortSignal) => Promise<ReconcileResult | void>;

export type ReconcileOutcome = 'success' | 'requeue' | 'error';

export interface WorkQueueHooks {
  onDepth?: (depth: number) => void;
  onAdd?: (key: string) => void;
  onRetry?: (key: string, attempt: number, delayMs: number, err: unknown) => void;
  onResult?: (key: string, outcome: ReconcileOutcome, durationMs: number) => void;
}

export interface WorkQueueOptions {
  reconcile: Reconciler;
  /** Reconciles running at once (default 4). */
  concurrency?: number;
  /** Per-key failure backoff (default 200 ms doubling to 5 min, +20 % jitter). */
  backoff?: BackoffOptions;
  hooks?: WorkQueueHooks;
  logger?: Logger;
  random?: () => number;
  /** Hold keys without reconciling until start() (a start-up that must finish first). */
  paused?: boolean;
}

export const DEFAULT_QUEUE_BACKOFF: BackoffOptions = { baseMs: 200, maxMs: 300_000, jitter: 0.2 };

/** The decision after one reconcile, kept pure: whether and when to run the key again. */
export function afterReconcile(
  outcome: { ok: true; result?: ReconcileResult | void } | { ok: false; error: unknown },
  failures: number,
  backoff: BackoffOptions,
  random: () => number = Math.random,
): { outcome: ReconcileOutcome; failures: number; requeueAfterMs?: number } {
  if (outcome.ok) {
    const after = outcome.result ? outcome.result.requeueAfterMs : undefined;
    return after !== undefined && after >= 0
      ? { outcome: 'requeue', failures: 0, requeueAfterMs: after }
      : { outcome: 'success', failures: 0 };
  }
  const n = failures + 1;
  return { outcome: 'error', failures: n, requeueAfterMs: backoffDelay(n, backoff, random) };
}

export class WorkQueue {
  private readonly pq: PQueue;
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  /** Added while processing: run again once the current reconcile ends. */
  private readonly dirty = new Set<string>();
  private readonly delayed = new Map<string, { timer: NodeJS.Timeout; at: number }>();
  private readonly failures = new Map<string, number>();
  private readonly abort = new AbortController();
  private closing = false;
  private readonly log: Logger;
  readonly metrics = { adds: 0, retries: 0, reconciles: 0 };

  constructor(private readonly opts: WorkQueueOptions) {
    this.pq = new PQueue({ concurrency: opts.concurrency ?? 4, autoStart: !opts.paused });
    this.log = opts.logger ?? createLogger('work-queue');
  }

  /** Begins reconciling the keys held while paused (a no-op when not paused). */
  start(): void {
    this.pq.start();
  }

  /** Keys waiting to run (not counting those running). */
  get depth(): number {
    return this.queued.size;
  }

  /** Keys being reconciled right now. */
  get inFlight(): number {
    return this.processing.size;
  }

  get isShuttingDown(): boolean {
    return this.closing;
  }

  /** Failures in a row of this key (0 after a success). */
  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  add(key: string): void {
    if (this.closing) return;
    this.metrics.adds++;
    this.opts.hooks?.onAdd?.(key);
    if (this.queued.has(key)) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    this.queued.add(key);
    this.reportDepth();
    inBackground(
      `processing ${key}`,
      this.pq.add(() => this.process(key)),
      this.log,
    );
  }

  /** Add after a delay; an earlier pending delay for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.closing) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const existing = this.delayed.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { timer, at });
  }

  /** Forget a key's failure history (its next failure starts from the base delay). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /**
   * Stop taking work, drop what has not started, and wait for running reconciles. After timeoutMs
   * they are told to stop (their signal aborts) and this resolves false.
   */
  async shutdown(timeoutMs = 30_000): Promise<boolean> {
    this.closing = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    this.pq.clear();
    this.queued.clear();
    this.dirty.clear();
    this.reportDepth();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const drained = await Promise.race([this.pq.onIdle().then(() => true as const), timedOut]);
    clearTimeout(timer);
    if (!drained) this.abort.abort(new Error('work queue shut down'));
    return drained;
  }

  private reportDepth(): void {
    this.opts.hooks?.onDepth?.(this.queued.size);
  }

  private async process(key: string): Promise<void> {
    this.queued.delete(key);
    if (this.closing) return;
    this.reportDepth();
    this.processing.add(key);
    const started = Date.now();
    let outcome: Parameters<typeof afterReconcile>[0];
    try {
      const signal = this.abort.signal;
      outcome = {
        ok: true,
        result: await inReconcile(key, () => this.opts.reconcile(key, signal)),
      };
    } catch (error) {
      outcome = { ok: false, error };
    }
    this.metrics.reconciles++;
    const next = afterReconcile(
      outcome,
      this.failures.get(key) ?? 0,
      this.opts.backoff ?? DEFAULT_QUEUE_BACKOFF,
      this.opts.random,
    );
    this.opts.hooks?.onResult?.(key, next.outcome, Date.now() - started);
    if (next.failures > 0) this.failures.set(key, next.failures);
    else this.failures.delete(key);
    if (next.outcome === 'error' && !outcome.ok) {
      this.metrics.retries++;
      this.opts.hooks?.onRetry?.(key, next.failures, next.requeueAfterMs ?? 0, outcome.error);
      this.log.warn(
        { err: outcome.error, key, attempt: next.failures, delayMs: next.requeueAfterMs },
        'reconcile failed; retrying',
      );
    }
    this.processing.delete(key);
    if (next.requeueAfterMs !== undefined) this.addAfter(key, next.requeueAfterMs);
    if (this.dirty.delete(key)) this.add(key);
  }
}

// Which reconcile a log line belongs to, as controller-runtime's reconcileID: the work queue runs
// each reconcile inside a context holding its key and a fresh id, and every logger adds them to
// the lines written within it, through any depth of calls, without passing them along.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

export interface ReconcileContext {
  reconcileID: string;
  key: string;
}

const current = new AsyncLocalStorage<ReconcileContext>();

/** Runs one reconcile of `key` under a new reconcile id. */
export function inReconcile<T>(key: string, fn: () => Promise<T>): Promise<T> {
  return current.run({ reconcileID: randomUUID(), key }, fn);
}

/**
 * Runs `fn` outside any reconcile: for work a reconcile starts that outlives it (a VM exit
 * watcher, container supervision), so its later lines do not carry a finished reconcile's id.
 */
export function outsideReconcile<T>(fn: () => T): T {
  return current.exit(fn);
}

/** The reconcile the caller runs in, if any. */
export function currentReconcile(): ReconcileContext | undefined {
  return current.getStore();
}

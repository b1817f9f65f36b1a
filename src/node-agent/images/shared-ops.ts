// One in-flight operation per key, shared by every caller that asks for that key while it runs.
// Each caller may cancel its own wait with its AbortSignal; the operation itself is cancelled only
// once every caller has gone. Callers of other keys never wait on it.

interface Op<V> {
  promise: Promise<V>;
  controller: AbortController;
  waiters: number;
}

export class SharedOps<K, V> {
  private readonly ops = new Map<K, Op<V>>();

  /** Keys with an operation in flight. */
  inFlight(): K[] {
    return [...this.ops.keys()];
  }

  /** Runs `start` for `key` unless one is in flight, then waits for it (or for `signal`). */
  run(key: K, start: (signal: AbortSignal) => Promise<V>, signal?: AbortSignal): Promise<V> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    let op = this.ops.get(key);
    if (!op) {
      const controller = new AbortController();
      const created: Op<V> = {
        controller,
        waiters: 0,
        promise: Promise.resolve()
          .then(() => start(controller.signal))
          .finally(() => {
            if (this.ops.get(key) === created) this.ops.delete(key);
          }),
      };
      // The shared promise may reject after every waiter left; that must not be unhandled.
      created.promise.catch(() => {});
      this.ops.set(key, created);
      op = created;
    }
    const current = op;
    current.waiters++;
    return new Promise<V>((resolve, reject) => {
      let settled = false;
      const leave = (): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        current.waiters--;
      };
      const onAbort = (): void => {
        if (settled) return;
        leave();
        if (current.waiters === 0) {
          // A caller arriving now starts afresh instead of joining a cancelled operation.
          if (this.ops.get(key) === current) this.ops.delete(key);
          current.controller.abort(abortReason(signal));
        }
        reject(abortReason(signal));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      current.promise.then(
        (v) => {
          if (settled) return;
          leave();
          resolve(v);
        },
        (err: unknown) => {
          if (settled) return;
          leave();
          reject(err);
        },
      );
    });
  }
}

function abortReason(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new Error('aborted');
}

// A list+watch that does not give up: relist on 410, restart with backoff after any error or end,
// a watchdog for silent (half-open) watches, optional periodic relist. client-node 1.4's own
// informer stops on errors and can hang, hence this.
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { inBackground } from '../common/background.js';
import type { Logger } from '../observability/logger.js';
import { createLogger } from '../observability/logger.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
import { sleep } from '../common/sleep.js';
import { isGone, KubeApiError } from './kube-client.js';
import { requestJson, streamWatch, type Query } from './kube-request.js';
import { classifyWatchEvent, ObjectCache, type CacheChange } from './object-cache.js';

export interface InformerHandlers<T> {
  onAdd?: (obj: T) => void;
  onUpdate?: (old: T, obj: T) => void;
  onDelete?: (obj: T) => void;
}

export interface InformerOptions<T> extends InformerHandlers<T> {
  /** Collection path, e.g. /api/v1/namespaces/x/configmaps or /apis/kata.sandbox.io/v1alpha1/katasandboxes. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** No event or bookmark for this long → abort the watch and restart (default 5 min). */
  watchdogMs?: number;
  /** Full relist this often, every object reported again as an update; 0 = never (default). */
  resyncMs?: number;
  /** Server-side watch timeout; default a random 4–4.5 min, below the watchdog. */
  watchTimeoutSeconds?: () => number;
  backoff?: BackoffOptions;
  /** List page size (default 500). */
  pageSize?: number;
  /** Per list-request deadline (default 60 s). */
  listTimeoutMs?: number;
  logger?: Logger;
}

interface ListBody<T> {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items?: T[];
}

/** Why a single watch stopped. */
type WatchEnd = 'ended' | 'gone' | 'resync' | 'restart';

class WatchdogFired extends Error {
  override readonly name = 'WatchdogFired';
}
class ResyncDue extends Error {
  override readonly name = 'ResyncDue';
}
class RestartRequested extends Error {
  override readonly name = 'RestartRequested';
}

export class Informer<T extends KubernetesObject> {
  readonly cache = new ObjectCache<T>();
  /** Resolves after the first successful list; rejects if stopped before that. */
  readonly synced: Promise<void>;
  private resolveSynced!: () => void;
  private rejectSynced!: (err: unknown) => void;
  private isSynced = false;
  private resourceVersion = '';
  private readonly stopper = new AbortController();
  private running: Promise<void> | undefined;
  private currentWatch: AbortController | undefined;
  private readonly log: Logger;
  private readonly handlers: InformerHandlers<T>[] = [];
  /** Counters for tests and metrics. */
  readonly stats = { lists: 0, watches: 0, restarts: 0, gone: 0, watchdogFired: 0, events: 0 };

  constructor(
    private readonly kc: KubeConfig,
    private readonly opts: InformerOptions<T>,
  ) {
    this.log = opts.logger ?? createLogger('informer');
    this.synced = new Promise<void>((resolve, reject) => {
      this.resolveSynced = resolve;
      this.rejectSynced = reject;
    });
    this.synced.catch(() => undefined); // a stop before sync must not be an unhandled rejection
    const { onAdd, onUpdate, onDelete } = opts;
    this.handlers.push({ onAdd, onUpdate, onDelete });
  }

  /** Add more handlers; they see later changes only (use cache.list() for the current state). */
  addHandlers(h: InformerHandlers<T>): void {
    this.handlers.push(h);
  }

  hasSynced(): boolean {
    return this.isSynced;
  }

  /** The resourceVersion a restarted watch would resume from. */
  get lastResourceVersion(): string {
    return this.resourceVersion;
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(namespace ? `${namespace}/${name}` : name);
  }

  list(): T[] {
    return this.cache.list();
  }

  /**
   * Drop the open watch and watch again from `resourceVersion` — a seam for tests of the server's
   * "too old resource version" (410) path, which otherwise needs etcd compaction to reach.
   */
  resumeFrom(resourceVersion: string): void {
    this.resourceVersion = resourceVersion;
    this.currentWatch?.abort(new RestartRequested('restart requested'));
  }

  /** Start the loop; `signal` (optional) stops it like stop() does. */
  start(signal?: AbortSignal): void {
    if (this.running) return;
    const stopOnAbort = (): void =>
      inBackground(`stopping the informer for ${this.opts.path}`, this.stop(), this.log);
    signal?.addEventListener('abort', stopOnAbort, { once: true });
    this.running = this.run().catch((err: unknown) =>
      this.log.error({ err, path: this.opts.path }, 'informer loop crashed'),
    );
  }

  /** Stop and wait for the loop to finish. */
  async stop(): Promise<void> {
    this.stopper.abort(new Error('informer stopped'));
    if (!this.isSynced)
      this.rejectSynced(new Error(`informer for ${this.opts.path} stopped before sync`));
    await this.running;
  }

  /** Wait for the first list, or throw after timeoutMs. */
  async waitForSync(timeoutMs = 60_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`informer for ${this.opts.path} not synced after ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.synced, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    let attempt = 0;
    let needList = true;
    let periodic = false;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.relist(signal, periodic);
          needList = false;
          periodic = false;
        }
        const started = Date.now();
        const { end, events } = await this.watchOnce(signal);
        if (end === 'gone') {
          this.stats.gone++;
          needList = true;
        } else if (end === 'resync') {
          needList = true;
          periodic = true;
        }
        // A watch that ended at once with nothing seen is a failure in disguise: back off.
        if (end === 'ended' && events === 0 && Date.now() - started < 1000)
          throw new Error('watch ended immediately');
        attempt = 0;
      } catch (err) {
        if (signal.aborted) break;
        if (isGone(err)) {
          this.stats.gone++;
          needList = true;
        }
        if (err instanceof WatchdogFired) this.stats.watchdogFired++;
        attempt++;
        this.stats.restarts++;
        const delay = backoffDelay(attempt, this.opts.backoff ?? DEFAULT_BACKOFF);
        this.log.warn(
          { err, path: this.opts.path, attempt, delay },
          'list/watch failed; restarting',
        );
        await sleep(delay, signal).catch(() => undefined);
      }
    }
  }

  private baseQuery(): Query {
    return { labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector };
  }

  /** List every page, then replace the cache and report the differences. */
  async relist(signal: AbortSignal, periodic = false): Promise<void> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await requestJson<ListBody<T>>(this.kc, this.opts.path, {
        query: { ...this.baseQuery(), limit: this.opts.pageSize ?? 500, continue: cont },
        signal,
        timeoutMs: this.opts.listTimeoutMs ?? 60_000,
      });
      const itemKind = page.kind?.replace(/List$/, '');
      for (const item of page.items ?? []) {
        // List items come without apiVersion/kind; fill them so cached objects are self-describing.
        items.push({ apiVersion: page.apiVersion, kind: itemKind, ...item });
      }
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion ?? rv;
    } while (cont);
    this.stats.lists++;
    this.resourceVersion = rv;
    this.emit(this.cache.replace(items, periodic));
    if (!this.isSynced) {
      this.isSynced = true;
      this.resolveSynced();
    }
  }

  private async watchOnce(outer: AbortSignal): Promise<{ end: WatchEnd; events: number }> {
    const ctl = new AbortController();
    this.currentWatch = ctl;
    const onOuter = (): void => ctl.abort(outer.reason);
    outer.addEventListener('abort', onOuter, { once: true });
    const watchdogMs = this.opts.watchdogMs ?? 300_000;
    let watchdog = setTimeout(
      () => ctl.abort(new WatchdogFired(`no watch event for ${watchdogMs} ms`)),
      watchdogMs,
    );
    const resync = this.opts.resyncMs
      ? setTimeout(() => ctl.abort(new ResyncDue('resync due')), this.opts.resyncMs)
      : undefined;
    let gone = false;
    let events = 0;
    const timeoutSeconds =
      this.opts.watchTimeoutSeconds?.() ?? 240 + Math.floor(Math.random() * 30);
    this.stats.watches++;
    try {
      await streamWatch(
        this.kc,
        this.opts.path,
        {
          ...this.baseQuery(),
          resourceVersion: this.resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds,
        },
        (raw) => {
          if (gone || ctl.signal.aborted) return;
          events++;
          this.stats.events++;
          clearTimeout(watchdog);
          watchdog = setTimeout(
            () => ctl.abort(new WatchdogFired(`no watch event for ${watchdogMs} ms`)),
            watchdogMs,
          );
          gone = this.handleEvent(raw, ctl);
        },
        ctl.signal,
      );
      return { end: gone ? 'gone' : 'ended', events };
    } catch (err) {
      if (gone) return { end: 'gone', events };
      if (err instanceof ResyncDue) return { end: 'resync', events };
      if (err instanceof RestartRequested) return { end: 'restart', events };
      throw err;
    } finally {
      clearTimeout(watchdog);
      clearTimeout(resync);
      this.currentWatch = undefined;
      outer.removeEventListener('abort', onOuter);
    }
  }

  /** Apply one watch line; returns true when the server said the resourceVersion is gone. */
  private handleEvent(raw: { type: string; object: unknown }, ctl: AbortController): boolean {
    const action = classifyWatchEvent<T>(raw);
    switch (action.kind) {
      case 'upsert': {
        if (action.resourceVersion) this.resourceVersion = action.resourceVersion;
        const change = this.cache.upsert(action.obj);
        if (change) this.emit([change]);
        return false;
      }
      case 'delete': {
        if (action.resourceVersion) this.resourceVersion = action.resourceVersion;
        const change = this.cache.delete(action.obj);
        if (change) this.emit([change]);
        return false;
      }
      case 'bookmark':
        if (action.resourceVersion) this.resourceVersion = action.resourceVersion;
        return false;
      case 'gone':
        ctl.abort(new KubeApiError(410, action.message, 'Expired', raw.object));
        return true;
      case 'error':
        ctl.abort(new KubeApiError(action.code ?? 500, action.message, undefined, raw.object));
        return false;
    }
  }

  private emit(changes: CacheChange<T>[]): void {
    for (const c of changes) {
      for (const h of this.handlers) {
        try {
          if (c.type === 'add') h.onAdd?.(c.obj);
          else if (c.type === 'update') h.onUpdate?.(c.old, c.obj);
          else h.onDelete?.(c.obj);
        } catch (err) {
          // A handler's bug must not stop the watch.
          this.log.error({ err, path: this.opts.path, change: c.type }, 'informer handler threw');
        }
      }
    }
  }
}

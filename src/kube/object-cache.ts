// The informer's in-memory store and the pure rules that change it: a watch event or a full
// relist applied to a Map keyed by namespace/name, and the resourceVersion to resume from.
import type { KubernetesObject } from '@kubernetes/client-node';

/** "namespace/name", or "name" for a cluster-scoped object (client-go's MetaNamespaceKeyFunc). */
export function objectKey(obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns ? `${ns}/${name}` : name;
}

/** Split a key from objectKey back into its parts. */
export function splitKey(key: string): { namespace?: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export type CacheChange<T> =
  { type: 'add'; obj: T } | { type: 'update'; old: T; obj: T } | { type: 'delete'; obj: T };

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** What one line of a watch stream means to the informer. */
export type WatchAction<T> =
  | { kind: 'upsert'; obj: T; resourceVersion?: string }
  | { kind: 'delete'; obj: T; resourceVersion?: string }
  | { kind: 'bookmark'; resourceVersion?: string }
  | { kind: 'gone'; message: string }
  | { kind: 'error'; code?: number; message: string };

interface StatusObject {
  kind?: string;
  code?: number;
  message?: string;
  reason?: string;
}

/** Classify a raw watch event. ERROR carries a metav1.Status: 410 (or reason Expired/Gone) means relist. */
export function classifyWatchEvent<T extends KubernetesObject>(ev: {
  type: string;
  object: unknown;
}): WatchAction<T> {
  const obj = ev.object as T | undefined;
  const rv = obj?.metadata?.resourceVersion;
  switch (ev.type) {
    case 'ADDED':
    case 'MODIFIED':
      return obj
        ? { kind: 'upsert', obj, resourceVersion: rv }
        : { kind: 'error', message: 'event without object' };
    case 'DELETED':
      return obj
        ? { kind: 'delete', obj, resourceVersion: rv }
        : { kind: 'error', message: 'event without object' };
    case 'BOOKMARK':
      return { kind: 'bookmark', resourceVersion: rv };
    case 'ERROR': {
      const s = (ev.object ?? {}) as StatusObject;
      const message = s.message ?? 'watch error';
      if (s.code === 410 || s.reason === 'Expired' || s.reason === 'Gone')
        return { kind: 'gone', message };
      return { kind: 'error', code: s.code, message };
    }
    default:
      return { kind: 'error', message: `unknown watch event type ${ev.type}` };
  }
}

export class ObjectCache<T extends KubernetesObject> {
  private readonly items = new Map<string, T>();

  get(key: string): T | undefined {
    return this.items.get(key);
  }

  list(): T[] {
    return [...this.items.values()];
  }

  keys(): string[] {
    return [...this.items.keys()];
  }

  get size(): number {
    return this.items.size;
  }

  /** Insert or replace; an event older than the cached object (by resourceVersion) is ignored. */
  upsert(obj: T): CacheChange<T> | undefined {
    const key = objectKey(obj);
    const old = this.items.get(key);
    if (old && !isNewer(obj, old)) return undefined;
    this.items.set(key, obj);
    return old ? { type: 'update', old, obj } : { type: 'add', obj };
  }

  /** Remove; reports the last known state (the cached one if present, else the event's). */
  delete(obj: T): CacheChange<T> | undefined {
    const key = objectKey(obj);
    const old = this.items.get(key);
    if (!old) return undefined;
    this.items.delete(key);
    return { type: 'delete', obj };
  }

  /**
   * Replace everything with a fresh list: missing objects are deleted, new ones added, changed ones
   * updated. With `all`, unchanged objects are reported as updates too (a periodic resync).
   */
  replace(objs: readonly T[], all = false): CacheChange<T>[] {
    const changes: CacheChange<T>[] = [];
    const fresh = new Map(objs.map((o) => [objectKey(o), o] as const));
    for (const [key, old] of this.items) {
      if (!fresh.has(key)) {
        this.items.delete(key);
        changes.push({ type: 'delete', obj: old });
      }
    }
    for (const [key, obj] of fresh) {
      const old = this.items.get(key);
      this.items.set(key, obj);
      if (!old) changes.push({ type: 'add', obj });
      else if (all || old.metadata?.resourceVersion !== obj.metadata?.resourceVersion)
        changes.push({ type: 'update', old, obj });
    }
    return changes;
  }
}

/**
 * Whether `a` is a later version than `b`. resourceVersions are opaque by contract, but etcd's are
 * integers; compare numerically when both are, else treat any difference as newer.
 */
export function isNewer(a: KubernetesObject, b: KubernetesObject): boolean {
  const ra = a.metadata?.resourceVersion;
  const rb = b.metadata?.resourceVersion;
  if (ra === undefined || rb === undefined) return true;
  if (/^\d+$/.test(ra) && /^\d+$/.test(rb)) return BigInt(ra) > BigInt(rb);
  return ra !== rb;
}

// Finalizers change only by JSON patch guarded by a resourceVersion test (DESIGN §3): server-side
// apply cannot remove another manager's list item, and a stale view must not clobber a newer list.
import type { KubernetesObject } from '@kubernetes/client-node';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { sleep } from '../common/sleep.js';
import {
  callApi,
  isConflict,
  isInvalid,
  isNotFound,
  type CallOptions,
  type KubeClients,
} from './kube-client.js';
import { KATA_SANDBOX_RESOURCE, type CustomResource } from './status-patch.js';

export type JsonPatchOp =
  | { op: 'test'; path: string; value: unknown }
  | { op: 'add'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/**
 * Ops adding `finalizer` to `obj` as read, or undefined when nothing is to be done (already there,
 * or deletion has begun — no finalizer is added then).
 */
export function addFinalizerPatch(
  obj: KubernetesObject,
  finalizer: string,
): JsonPatchOp[] | undefined {
  const meta = obj.metadata ?? {};
  if (meta.deletionTimestamp) return undefined;
  const list = meta.finalizers;
  if (list?.includes(finalizer)) return undefined;
  const rvTest: JsonPatchOp = {
    op: 'test',
    path: '/metadata/resourceVersion',
    value: meta.resourceVersion,
  };
  if (!list) return [rvTest, { op: 'add', path: '/metadata/finalizers', value: [finalizer] }];
  return [rvTest, { op: 'add', path: '/metadata/finalizers/-', value: finalizer }];
}

/** Ops removing `finalizer` (tested at its index), or undefined when it is absent. */
export function removeFinalizerPatch(
  obj: KubernetesObject,
  finalizer: string,
): JsonPatchOp[] | undefined {
  const meta = obj.metadata ?? {};
  const i = meta.finalizers?.indexOf(finalizer) ?? -1;
  if (i < 0) return undefined;
  return [
    { op: 'test', path: '/metadata/resourceVersion', value: meta.resourceVersion },
    { op: 'test', path: `/metadata/finalizers/${i}`, value: finalizer },
    { op: 'remove', path: `/metadata/finalizers/${i}` },
  ];
}

/** A stale read: the test op failed (422 from the JSON patch test) or the write raced (409). */
export const isStaleWrite = (err: unknown): boolean => isConflict(err) || isInvalid(err);

export interface FinalizerTarget {
  namespace: string;
  name: string;
  resource?: CustomResource;
}

export type FinalizerOutcome = 'changed' | 'unchanged' | 'not-found';

export interface FinalizerOptions extends CallOptions {
  /** Re-reads after a stale write before giving up (default 5). */
  attempts?: number;
}

function crParams(t: FinalizerTarget) {
  const r = t.resource ?? KATA_SANDBOX_RESOURCE;
  return {
    group: r.group,
    version: r.version,
    plural: r.plural,
    namespace: t.namespace,
    name: t.name,
  };
}

/** Apply one prepared patch to the object (JSON patch; no retry). */
export async function patchFinalizers(
  clients: Pick<KubeClients, 'custom'>,
  target: FinalizerTarget,
  ops: JsonPatchOp[],
  opts: CallOptions = {},
): Promise<KubernetesObject> {
  return callApi(
    `patch finalizers of ${target.namespace}/${target.name}`,
    () =>
      clients.custom.patchNamespacedCustomObject(
        { ...crParams(target), body: ops },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      ) as Promise<KubernetesObject>,
    opts,
  );
}

async function changeFinalizer(
  clients: Pick<KubeClients, 'custom'>,
  target: FinalizerTarget,
  build: (obj: KubernetesObject) => JsonPatchOp[] | undefined,
  opts: FinalizerOptions,
  current?: KubernetesObject,
): Promise<FinalizerOutcome> {
  const attempts = opts.attempts ?? 5;
  let obj = current;
  for (let i = 0; ; i++) {
    try {
      obj ??= (await callApi(
        `get ${target.namespace}/${target.name}`,
        () =>
          clients.custom.getNamespacedCustomObject(crParams(target)) as Promise<KubernetesObject>,
        opts,
      )) as KubernetesObject;
      const ops = build(obj);
      if (!ops) return 'unchanged';
      await patchFinalizers(clients, target, ops, opts);
      return 'changed';
    } catch (err) {
      if (isNotFound(err)) return 'not-found';
      if (!isStaleWrite(err) || i + 1 >= attempts) throw err;
      obj = undefined; // re-read and decide again
      await sleep(50 * (i + 1), opts.signal);
    }
  }
}

/**
 * Add `finalizer` unless present or deletion has begun. `current` (e.g. from an informer cache)
 * saves a read; a stale one only costs a retry after a fresh read.
 */
export function addFinalizer(
  clients: Pick<KubeClients, 'custom'>,
  target: FinalizerTarget,
  finalizer: string,
  opts: FinalizerOptions & { current?: KubernetesObject } = {},
): Promise<FinalizerOutcome> {
  return changeFinalizer(
    clients,
    target,
    (o) => addFinalizerPatch(o, finalizer),
    opts,
    opts.current,
  );
}

/** Remove `finalizer` if present; a missing object counts as done. */
export function removeFinalizer(
  clients: Pick<KubeClients, 'custom'>,
  target: FinalizerTarget,
  finalizer: string,
  opts: FinalizerOptions & { current?: KubernetesObject } = {},
): Promise<FinalizerOutcome> {
  return changeFinalizer(
    clients,
    target,
    (o) => removeFinalizerPatch(o, finalizer),
    opts,
    opts.current,
  );
}

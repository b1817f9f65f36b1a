// The controller's part of the pull-secret projection (src/kube/pull-secret-projection.ts): for one
// sandbox, whether its projection must be written, re-sealed or deleted; and which projections
// lost their sandbox. Pure, so every branch is tested without a cluster.
import { hasEnded, NODE_LABEL, type KataSandbox } from '../crds/index.js';
import type { NodeKey, ProjectionView } from '../kube/pull-secret-projection.js';

/** What the projection plan sees besides the sandbox. */
export interface PullSecretWorld {
  /** The key node `node`'s agent publishes on its Lease, if any (and well-formed). */
  nodeKey(node: string): NodeKey | undefined;
  /** The projection that exists for sandbox `uid`, if any. */
  projection(uid: string): ProjectionView | undefined;
}

export type ProjectionWhy = 'missing' | 'nodeChanged' | 'keyChanged' | 'refresh';

export type ProjectionAction =
  | { kind: 'projectPullSecrets'; node: string; key: NodeKey; why: ProjectionWhy }
  | { kind: 'deleteProjection'; uid: string; why: string };

export interface ProjectionPlan {
  actions: ProjectionAction[];
  requeueAfterMs?: number;
}

/** While pulls may still happen, the referenced Secrets are read again this often. */
export const PROJECTION_REFRESH_MS = 30_000;

/** Containers that pull an image and have not started yet (their pulls may still need secrets). */
export function pullsPending(sb: KataSandbox): boolean {
  const started = new Set(
    (sb.status?.containers ?? [])
      .filter((c) => c.state === 'Running' || c.state === 'Exited')
      .map((c) => c.name),
  );
  return sb.spec.containers.some((c) => c.image !== undefined && !started.has(c.name));
}

/** Why a sandbox needs no projection (deleted, ended, unbound, nothing to pull), or undefined. */
function notNeeded(sb: KataSandbox, node: string | undefined): string | undefined {
  if (sb.metadata.deletionTimestamp) return 'sandbox is being deleted';
  if (hasEnded(sb.status?.phase)) return `sandbox ${sb.status?.phase ?? 'ended'}`;
  if (!node) return 'sandbox is not bound to a node';
  if ((sb.spec.imagePullSecrets ?? []).length === 0) return 'sandbox names no imagePullSecrets';
  if (!sb.spec.containers.some((c) => c.image !== undefined)) return 'sandbox pulls no image';
  return undefined;
}

export function planProjection(sb: KataSandbox, pw: PullSecretWorld): ProjectionPlan {
  const uid = sb.metadata.uid ?? '';
  const node = sb.metadata.labels?.[NODE_LABEL];
  const existing = uid ? pw.projection(uid) : undefined;
  const why = notNeeded(sb, node);
  if (why || !node || !uid) {
    return { actions: existing ? [{ kind: 'deleteProjection', uid, why: why ?? 'no uid' }] : [] };
  }
  const key = pw.nodeKey(node);
  if (!key) {
    // Nothing can be sealed for a node that published no key; its agent waits and says so. A
    // projection for an earlier node is useless there and goes.
    return existing && existing.node !== node
      ? { actions: [{ kind: 'deleteProjection', uid, why: `sandbox moved to node ${node}` }] }
      : { actions: [] };
  }
  const project = (w: ProjectionWhy): ProjectionAction => ({
    kind: 'projectPullSecrets',
    node,
    key,
    why: w,
  });
  if (!existing) return { actions: [project('missing')] };
  if (existing.node !== node) return { actions: [project('nodeChanged')] };
  if (existing.fingerprint !== key.fingerprint) return { actions: [project('keyChanged')] };
  if (pullsPending(sb)) {
    return { actions: [project('refresh')], requeueAfterMs: PROJECTION_REFRESH_MS };
  }
  return { actions: [] };
}

/**
 * Projections whose sandbox the controller's cache no longer has, among those in its scope
 * (`watchNamespace` '' = all): candidates for deletion, to be confirmed against the API server.
 */
export function orphanedProjections(
  projections: readonly ProjectionView[],
  sandboxes: readonly KataSandbox[],
  watchNamespace: string,
): ProjectionView[] {
  const alive = new Set(sandboxes.map((s) => s.metadata.uid));
  return projections.filter(
    (p) => (watchNamespace === '' || p.namespace === watchNamespace) && !alive.has(p.uid),
  );
}

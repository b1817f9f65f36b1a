// The projection plan's view of the cluster, from the node agents' Leases (their published keys)
// and the projection Secrets in kata-system. Pure.
import type { V1Lease, V1Secret } from '@kubernetes/client-node';
import { nodeOfLease } from '../kube/lease.js';
import {
  leaseNodeKey,
  NODE_KEY_ANNOTATION,
  NODE_KEY_FINGERPRINT_ANNOTATION,
  projectionView,
  type NodeKey,
  type ProjectionView,
} from '../kube/pull-secret-projection.js';
import type { PullSecretWorld } from './pull-secret-projection.js';

export function projectionViews(secrets: readonly V1Secret[]): ProjectionView[] {
  return secrets.map(projectionView).filter((v): v is ProjectionView => v !== undefined);
}

// Decoding a key costs a little; Leases are renewed every 10 s with the same key.
const decoded = new Map<string, NodeKey | undefined>();

function keyOf(lease: V1Lease): NodeKey | undefined {
  const memo = `${lease.metadata?.annotations?.[NODE_KEY_ANNOTATION] ?? ''}\0${
    lease.metadata?.annotations?.[NODE_KEY_FINGERPRINT_ANNOTATION] ?? ''
  }`;
  if (!decoded.has(memo)) {
    if (decoded.size > 4096) decoded.clear();
    decoded.set(memo, leaseNodeKey(lease));
  }
  return decoded.get(memo);
}

export function pullSecretWorld(
  leases: readonly V1Lease[],
  projections: readonly V1Secret[],
): PullSecretWorld {
  const keys = new Map<string, NodeKey>();
  for (const lease of leases) {
    const node = nodeOfLease(lease);
    const key = node ? keyOf(lease) : undefined;
    if (node && key) keys.set(node, key);
  }
  const byUid = new Map(projectionViews(projections).map((p) => [p.uid, p]));
  return { nodeKey: (n) => keys.get(n), projection: (uid) => byUid.get(uid) };
}

import type { V1Lease, V1Node } from '@kubernetes/client-node';
import { leaseCapacity, leaseWarmReady, nodeOfLease } from '../kube/lease.js';
import type { LeaseJudgement } from './lease-observations.js';
import type { NodeLoad, NodeView } from './node-candidates.js';
import type { World } from './sandbox-plan.js';

/** How a Lease is judged; `judge` of LeaseObservations in the controller. */
export type JudgeLease = (lease: V1Lease) => LeaseJudgement;

/**
 * The controller's view of nodes, from node agent Leases (as judged: renewal and duration the
 * controller believes, lease-observations.ts) joined with Node objects (pure).
 */
export function nodeViews(
  leases: readonly V1Lease[],
  nodes: readonly V1Node[],
  judge: JudgeLease,
): NodeView[] {
  const nodeByName = new Map(nodes.map((n) => [n.metadata?.name ?? '', n]));
  const views: NodeView[] = [];
  for (const lease of leases) {
    const name = nodeOfLease(lease);
    if (!name) continue;
    const cap = leaseCapacity(lease);
    const warm = leaseWarmReady(lease);
    const { renewedAt, durationSeconds } = judge(lease);
    const node = nodeByName.get(name);
    views.push({
      name,
      lease: {
        renewTime: renewedAt === undefined ? undefined : new Date(renewedAt),
        leaseDurationSeconds: durationSeconds,
        capacitySandboxes: cap?.sandboxes,
        capacityMemoryMiB: cap?.memoryMiB,
        ...(Object.keys(warm).length > 0 && { warmReady: warm }),
      },
      node: node && {
        labels: node.metadata?.labels ?? {},
        unschedulable: Boolean(node.spec?.unschedulable),
      },
    });
  }
  return views;
}

export function buildWorld(
  leases: readonly V1Lease[],
  nodes: readonly V1Node[],
  loadOf: (node: string) => NodeLoad,
  now: Date,
  judge: JudgeLease,
): World {
  return { nodes: nodeViews(leases, nodes, judge), loadOf, now };
}

import { freshUntil } from '../kube/lease.js';

/** What the controller knows about one node agent (from its Lease) and its Node object, if any. */
export interface NodeView {
  name: string;
  lease?: {
    /** The last renewal as the controller judges it (lease-observations.ts), not spec.renewTime. */
    renewTime?: Date;
    /** spec.leaseDurationSeconds, capped by the controller. */
    leaseDurationSeconds?: number;
    capacitySandboxes?: number;
    capacityMemoryMiB?: number;
    /** Ready warm VMs by shape key, as the node agent advertises them. */
    warmReady?: Record<string, number>;
  };
  node?: { labels: Record<string, string>; unschedulable: boolean };
}

export interface NodeLoad {
  sandboxes: number;
  memoryMiB: number;
}

export interface SchedulingRequest {
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  memoryMiB: number;
  /** The sandbox's VM shape key: a node with a ready warm VM of it is preferred. */
  warmShape?: string;
}

export type SchedulingResult = { node: string } | { unschedulable: string };

type Rejection =
  | 'lease expired'
  | 'no node agent'
  | 'cordoned'
  | 'nodeName mismatch'
  | 'nodeSelector mismatch'
  | 'no Node object'
  | 'sandbox capacity full'
  | 'insufficient memory';

/** Whether the node's Lease is fresh as the controller judged it (freshUntil on its view). */
export function nodeLeaseIsFresh(lease: NodeView['lease'], now: Date): boolean {
  const until = freshUntil(lease?.renewTime?.getTime(), lease?.leaseDurationSeconds);
  return until !== undefined && now.getTime() < until;
}

function rejection(
  view: NodeView,
  req: SchedulingRequest,
  load: NodeLoad,
  now: Date,
): Rejection | undefined {
  // A pinned sandbox counts every other node as a mismatch first, so the message tells the
  // pinned node's own trouble apart from the rest.
  if (req.nodeName && req.nodeName !== view.name) return 'nodeName mismatch';
  if (!view.lease) return 'no node agent';
  if (!nodeLeaseIsFresh(view.lease, now)) return 'lease expired';
  if (view.node?.unschedulable) return 'cordoned';
  const selector = Object.entries(req.nodeSelector ?? {});
  if (selector.length > 0) {
    // A selector can only match labels of a Node object that exists.
    if (!view.node) return 'no Node object';
    if (!selector.every(([k, v]) => view.node?.labels[k] === v)) return 'nodeSelector mismatch';
  }
  if (load.sandboxes + 1 > (view.lease.capacitySandboxes ?? 0)) return 'sandbox capacity full';
  if (load.memoryMiB + req.memoryMiB > (view.lease.capacityMemoryMiB ?? 0))
    return 'insufficient memory';
  return undefined;
}

/**
 * Picks a node that can take the sandbox: one with a ready warm VM of its shape first (a claim
 * beats a boot), then the least loaded (fewest sandboxes, then most free memory, then name, so
 * the choice is deterministic); or says why none can, as the scheduler does.
 */
export function chooseNode(
  req: SchedulingRequest,
  nodes: NodeView[],
  loadOf: (node: string) => NodeLoad,
  now: Date,
): SchedulingResult {
  const reasons = new Map<Rejection, number>();
  const fits: { name: string; load: NodeLoad; freeMemory: number; warm: number }[] = [];
  for (const view of nodes) {
    const load = loadOf(view.name);
    const why = rejection(view, req, load, now);
    if (why) reasons.set(why, (reasons.get(why) ?? 0) + 1);
    else
      fits.push({
        name: view.name,
        load,
        freeMemory: (view.lease?.capacityMemoryMiB ?? 0) - load.memoryMiB,
        warm: req.warmShape ? (view.lease?.warmReady?.[req.warmShape] ?? 0) : 0,
      });
  }
  fits.sort(
    (a, b) =>
      Number(b.warm > 0) - Number(a.warm > 0) ||
      a.load.sandboxes - b.load.sandboxes ||
      b.freeMemory - a.freeMemory ||
      a.name.localeCompare(b.name),
  );
  const best = fits[0];
  if (best) return { node: best.name };
  if (req.nodeName && !nodes.some((n) => n.name === req.nodeName)) {
    return {
      unschedulable: `node ${JSON.stringify(req.nodeName)} (spec.nodeName) has no node agent`,
    };
  }
  const detail = [...reasons]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([why, count]) => `${count} ${why}`)
    .join(', ');
  return { unschedulable: `0/${nodes.length} nodes are available${detail ? `: ${detail}` : ''}` };
}

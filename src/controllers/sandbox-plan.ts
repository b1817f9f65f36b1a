import {
  hasEnded,
  NODE_CLEANUP_FINALIZER,
  NODE_LABEL,
  shapeKey,
  shapeOf,
  vmMemoryMiB,
  type Condition,
  type KataSandbox,
} from '../crds/index.js';
import {
  findCondition,
  nextCondition,
  sameControllerStatus,
  type ControllerStatus,
} from './controller-status.js';
import { chooseNode, nodeLeaseIsFresh, type NodeLoad, type NodeView } from './node-candidates.js';
import { derivePhase } from './phase.js';
import {
  planProjection,
  type ProjectionAction,
  type PullSecretWorld,
} from './pull-secret-projection.js';

/** What the controller sees of the cluster when it reconciles one sandbox. */
export interface World {
  nodes: NodeView[];
  loadOf(node: string): NodeLoad;
  now: Date;
  /** Node keys and existing projections; without it no pull secrets are projected. */
  pullSecrets?: PullSecretWorld;
}

export type Action =
  | { kind: 'addFinalizer' }
  | { kind: 'removeFinalizer'; why: string }
  /** The node label; with `withFinalizer` the node-cleanup finalizer in the same write. */
  | { kind: 'bind'; node: string; withFinalizer?: true }
  | { kind: 'applyStatus'; status: ControllerStatus }
  | { kind: 'event'; type: 'Normal' | 'Warning'; reason: string; note: string }
  | ProjectionAction;

export interface Plan {
  actions: Action[];
  /** Reconcile again after this long even if nothing changes (lease expiry, retry scheduling). */
  requeueAfterMs?: number;
}

const UNSCHEDULABLE_RETRY_MS = 30_000;

const hasFinalizer = (sb: KataSandbox): boolean =>
  (sb.metadata.finalizers ?? []).includes(NODE_CLEANUP_FINALIZER);

function nodeLostSince(
  node: string,
  world: World,
): { lost: boolean; expiresInMs?: number; since?: Date } {
  const view = world.nodes.find((n) => n.name === node);
  const lease = view?.lease;
  if (nodeLeaseIsFresh(lease, world.now)) {
    const expiry = lease!.renewTime!.getTime() + lease!.leaseDurationSeconds! * 1000;
    return { lost: false, expiresInMs: expiry - world.now.getTime() };
  }
  const since =
    lease?.renewTime && lease.leaseDurationSeconds
      ? new Date(lease.renewTime.getTime() + lease.leaseDurationSeconds * 1000)
      : undefined;
  return { lost: true, since };
}

function statusWith(
  sb: KataSandbox,
  world: World,
  scheduled: Omit<Condition, 'lastTransitionTime'> | undefined,
  nodeName: string | undefined,
  nodeLost: { node: string; since?: Date } | undefined,
): ControllerStatus {
  const prevScheduled = findCondition(sb, 'Scheduled');
  const schedCond = scheduled ? nextCondition(prevScheduled, scheduled, world.now) : prevScheduled;
  const conditions = (sb.status?.conditions ?? []).filter((c) => c.type !== 'Scheduled');
  if (schedCond) conditions.push(schedCond);
  const derived = derivePhase({
    conditions,
    deleting: Boolean(sb.metadata.deletionTimestamp),
    nodeLost,
    previous: sb.status,
  });
  return {
    ...derived,
    nodeName,
    observedGeneration: sb.metadata.generation,
    conditions: schedCond ? [schedCond] : [],
  };
}

function withStatus(sb: KataSandbox, status: ControllerStatus, actions: Action[]): Action[] {
  return sameControllerStatus(sb, status) ? actions : [...actions, { kind: 'applyStatus', status }];
}

/**
 * One level-triggered decision for one sandbox: from what is (the object, leases, load) to what
 * to do next. Pure, so every branch is tested without a cluster.
 */
function planLifecycle(sb: KataSandbox, world: World): Plan {
  const node = sb.metadata.labels?.[NODE_LABEL];
  const lost = node ? nodeLostSince(node, world) : undefined;
  const nodeLost = node && lost?.lost ? { node, since: lost.since } : undefined;

  if (sb.metadata.deletionTimestamp) {
    const actions: Action[] = [];
    if (hasFinalizer(sb) && !node)
      actions.push({ kind: 'removeFinalizer', why: 'never scheduled' });
    else if (hasFinalizer(sb) && nodeLost)
      actions.push({ kind: 'removeFinalizer', why: `node ${node} is lost` });
    const status = statusWith(sb, world, undefined, sb.status?.nodeName, nodeLost);
    return { actions: withStatus(sb, status, actions), requeueAfterMs: lost?.expiresInMs };
  }

  // Only a bound sandbox has anything on a node to clean up: an unbound one gets its finalizer
  // in the binding write itself (one write, one reconcile round), a bound one without it (written
  // by an older controller, or removed by hand) gets it back first.
  if (node && !hasFinalizer(sb)) return { actions: [{ kind: 'addFinalizer' }] };

  if (!node) {
    if (hasEnded(sb.status?.phase)) return { actions: [] };
    const spec = sb.spec;
    const choice = chooseNode(
      {
        nodeName: spec.nodeName || undefined,
        nodeSelector: spec.nodeSelector,
        memoryMiB: vmMemoryMiB(spec),
        warmShape: shapeKey(shapeOf(spec.vm)),
      },
      world.nodes,
      (n) => world.loadOf(n),
      world.now,
    );
    if ('node' in choice) {
      const scheduled = {
        type: 'Scheduled',
        status: 'True' as const,
        reason: 'Scheduled',
        message: `placed on node ${choice.node}`,
        observedGeneration: sb.metadata.generation,
      };
      const status = statusWith(sb, world, scheduled, choice.node, undefined);
      return {
        actions: [
          hasFinalizer(sb)
            ? { kind: 'bind', node: choice.node }
            : { kind: 'bind', node: choice.node, withFinalizer: true },
          { kind: 'applyStatus', status },
          {
            kind: 'event',
            type: 'Normal',
            reason: 'Scheduled',
            note: `placed on node ${choice.node}`,
          },
        ],
      };
    }
    const unschedulable = {
      type: 'Scheduled',
      status: 'False' as const,
      reason: 'Unschedulable',
      message: choice.unschedulable,
      observedGeneration: sb.metadata.generation,
    };
    const status = statusWith(sb, world, unschedulable, undefined, undefined);
    const changed = !sameControllerStatus(sb, status);
    const actions: Action[] = changed
      ? [
          { kind: 'applyStatus', status },
          {
            kind: 'event',
            type: 'Warning',
            reason: 'FailedScheduling',
            note: choice.unschedulable,
          },
        ]
      : [];
    return { actions, requeueAfterMs: UNSCHEDULABLE_RETRY_MS };
  }

  // Bound but the Scheduled condition was never written (a crash between the two writes).
  const scheduled =
    findCondition(sb, 'Scheduled')?.status === 'True'
      ? undefined
      : {
          type: 'Scheduled',
          status: 'True' as const,
          reason: 'Scheduled',
          message: `placed on node ${node}`,
        };
  const status = statusWith(sb, world, scheduled, node, nodeLost);
  let actions = withStatus(sb, status, []);
  if (nodeLost && sb.status?.reason !== 'NodeLost' && status.reason === 'NodeLost') {
    actions = [
      ...actions,
      { kind: 'event', type: 'Warning', reason: 'NodeLost', note: status.message },
    ];
  }
  return { actions, requeueAfterMs: lost?.expiresInMs };
}

/**
 * The whole plan of one sandbox: its lifecycle, then its pull-secret projection (last, so a
 * projection that cannot be written never holds up binding, status or finalizers).
 */
export function planSandbox(sb: KataSandbox, world: World): Plan {
  const plan = planLifecycle(sb, world);
  if (!world.pullSecrets) return plan;
  const projection = planProjection(sb, world.pullSecrets);
  const waits = [plan.requeueAfterMs, projection.requeueAfterMs].filter(
    (ms): ms is number => ms !== undefined,
  );
  return {
    actions: [...plan.actions, ...projection.actions],
    ...(waits.length > 0 && { requeueAfterMs: Math.min(...waits) }),
  };
}

import {
  PatchStrategy,
  setHeaderOptions,
  type V1Lease,
  type V1Node,
  type V1Secret,
} from '@kubernetes/client-node';
import {
  CONTROLLER_FIELD_MANAGER,
  CRD_GROUP,
  CRD_VERSION,
  NODE_CLEANUP_FINALIZER,
  NODE_LABEL,
  PLURAL,
  vmMemoryMiB,
  type KataSandbox,
} from '../crds/index.js';
import { EventRecorder } from '../kube/events.js';
import { addFinalizer, addFinalizerPatch, removeFinalizer } from '../kube/finalizers.js';
import {
  callApi,
  isConflict,
  isFailedPatchTest,
  isNotFound,
  type KubeClients,
} from '../kube/kube-client.js';
import { applyStatus } from '../kube/status-patch.js';
import type { ReconcileResult } from '../kube/work-queue.js';
import { splitKey } from '../kube/object-cache.js';
import type { Logger } from '../observability/logger.js';
import type { ControllerMetrics } from './controller-metrics.js';
import type { LeaseObservations } from './lease-observations.js';
import type { NodeLoadIndex } from './node-load-index.js';
import { planSandbox, type Action } from './sandbox-plan.js';
import type { PullSecretProjector } from './pull-secret-projector.js';
import { pullSecretWorld } from './pull-secret-world.js';
import { buildWorld } from './world.js';

export interface ReconcilerDeps {
  clients: KubeClients;
  sandboxes: {
    get(ns: string | undefined, name: string): KataSandbox | undefined;
  };
  /** Per-node load, fed by the sandbox informer's events (main.ts). */
  loads: NodeLoadIndex;
  leases: { list(): V1Lease[] };
  /** When each Lease was seen to change (main.ts feeds it from the Lease informer). */
  leaseObservations: LeaseObservations;
  nodes: { list(): V1Node[] };
  events: EventRecorder;
  metrics: ControllerMetrics;
  log: Logger;
  now?: () => Date;
  /** The pull-secret projection: existing projections (kata-system) and who writes them. */
  pullSecrets?: { projections: { list(): V1Secret[] }; projector: PullSecretProjector };
}

const STALE_BIND_RETRY_MS = 200;

const escapePointer = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * Reads one sandbox from the cache, plans, and carries out the plan. Bindings this process made
 * and the cache has not shown yet count as load (NodeLoadIndex.reserve), so a lagging watch cannot
 * overbook a node. Nothing here scans the cache: a reconcile costs the same at any number of
 * sandboxes.
 */
export class SandboxReconciler {
  constructor(private readonly deps: ReconcilerDeps) {}

  reconcile = async (key: string, signal: AbortSignal): Promise<ReconcileResult | void> => {
    const { namespace, name } = splitKey(key);
    const sb = this.deps.sandboxes.get(namespace, name);
    if (!sb) return;
    const now = this.deps.now?.() ?? new Date();
    const world = buildWorld(
      this.deps.leases.list(),
      this.deps.nodes.list(),
      (n) => this.deps.loads.loadOf(n),
      now,
      (lease) => this.deps.leaseObservations.judge(lease, now.getTime()),
    );
    if (this.deps.pullSecrets) {
      world.pullSecrets = pullSecretWorld(
        this.deps.leases.list(),
        this.deps.pullSecrets.projections.list(),
      );
    }
    const plan = planSandbox(sb, world);
    for (const action of plan.actions) {
      const done = await this.execute(sb, key, action, signal);
      if (done === false) return { requeueAfterMs: 0 };
      if (typeof done === 'number') return { requeueAfterMs: done };
    }
    return plan.requeueAfterMs === undefined ? undefined : { requeueAfterMs: plan.requeueAfterMs };
  };

  /**
   * True when done; false when the object is gone and the key should be looked at afresh; a
   * number of milliseconds after which to look again when the write met a newer version.
   */
  private async execute(
    sb: KataSandbox,
    key: string,
    action: Action,
    signal: AbortSignal,
  ): Promise<boolean | number> {
    const ref = { namespace: sb.metadata.namespace ?? '', name: sb.metadata.name ?? '' };
    const { clients, log } = this.deps;
    switch (action.kind) {
      case 'addFinalizer': {
        await addFinalizer(clients, ref, NODE_CLEANUP_FINALIZER, { signal, current: sb });
        return true;
      }
      case 'removeFinalizer': {
        log.info(
          { ...ref, uid: sb.metadata.uid, why: action.why },
          'removing node-cleanup finalizer',
        );
        await removeFinalizer(clients, ref, NODE_CLEANUP_FINALIZER, { signal, current: sb });
        return true;
      }
      case 'bind': {
        // Reserved before the first await, so a reconcile of another sandbox running meanwhile
        // already counts this one on the node.
        this.deps.loads.reserve(key, { node: action.node, memoryMiB: vmMemoryMiB(sb.spec) });
        try {
          await this.bind(sb, action.node, action.withFinalizer === true, signal);
        } catch (err) {
          this.deps.loads.release(key);
          if (isNotFound(err)) return false;
          // Another writer changed it first (another replica bound it): look again once the
          // cache has caught up, not at once with the same stale version.
          if (isConflict(err) || isFailedPatchTest(err)) return STALE_BIND_RETRY_MS;
          throw err;
        }
        const created = sb.metadata.creationTimestamp;
        if (created)
          this.deps.metrics.scheduleSeconds.observe(
            (Date.now() - new Date(created).getTime()) / 1000,
          );
        return true;
      }
      case 'applyStatus': {
        try {
          await applyControllerStatus(clients, ref, action.status, signal);
        } catch (err) {
          if (isNotFound(err)) return false;
          throw err;
        }
        return true;
      }
      case 'event': {
        const regarding = {
          apiVersion: `${CRD_GROUP}/${CRD_VERSION}`,
          kind: 'KataSandbox',
          namespace: ref.namespace,
          name: ref.name,
          uid: sb.metadata.uid,
        };
        this.deps.events.record({
          regarding,
          type: action.type,
          reason: action.reason,
          action: action.reason,
          note: action.note,
        });
        return true;
      }
      case 'projectPullSecrets':
        await this.deps.pullSecrets?.projector.project(
          sb,
          action.node,
          action.key,
          action.why,
          signal,
        );
        return true;
      case 'deleteProjection':
        await this.deps.pullSecrets?.projector.remove(action.uid, action.why, signal);
        return true;
    }
  }

  /**
   * The node label (and the finalizer, when asked), set only if the object is still the version
   * the decision was made on.
   */
  private async bind(
    sb: KataSandbox,
    node: string,
    withFinalizer: boolean,
    signal: AbortSignal,
  ): Promise<void> {
    const finalizer = withFinalizer ? (addFinalizerPatch(sb, NODE_CLEANUP_FINALIZER) ?? []) : [];
    const ops = [
      { op: 'test', path: '/metadata/resourceVersion', value: sb.metadata.resourceVersion },
      sb.metadata.labels
        ? { op: 'add', path: `/metadata/labels/${escapePointer(NODE_LABEL)}`, value: node }
        : { op: 'add', path: '/metadata/labels', value: { [NODE_LABEL]: node } },
      // Its own resourceVersion test is the same as the one above.
      ...finalizer.filter((op) => op.op !== 'test'),
    ];
    await callApi(
      `bind ${sb.metadata.namespace}/${sb.metadata.name} to ${node}`,
      () =>
        this.deps.clients.custom.patchNamespacedCustomObject(
          {
            group: CRD_GROUP,
            version: CRD_VERSION,
            plural: PLURAL,
            namespace: sb.metadata.namespace ?? '',
            name: sb.metadata.name ?? '',
            body: ops,
          },
          setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
        ),
      { signal },
    );
  }
}

async function applyControllerStatus(
  clients: KubeClients,
  ref: { namespace: string; name: string },
  status: unknown,
  signal: AbortSignal,
): Promise<void> {
  await applyStatus(clients, CONTROLLER_FIELD_MANAGER, ref, status, { signal });
}

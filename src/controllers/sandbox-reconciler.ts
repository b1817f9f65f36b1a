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
  type KataSandbox,
} from '../crds/index.js';
import { EventRecorder } from '../kube/events.js';
import { addFinalizer, removeFinalizer } from '../kube/finalizers.js';
import { callApi, isConflict, isNotFound, type KubeClients } from '../kube/kube-client.js';
import { applyStatus } from '../kube/status-patch.js';
import type { ReconcileResult } from '../kube/work-queue.js';
import { splitKey } from '../kube/object-cache.js';
import type { Logger } from '../observability/logger.js';
import type { ControllerMetrics } from './controller-metrics.js';
import type { LeaseObservations } from './lease-observations.js';
import type { NodeLoad } from './node-candidates.js';
import { planSandbox, type Action } from './sandbox-plan.js';
import type { PullSecretProjector } from './pull-secret-projector.js';
import { pullSecretWorld } from './pull-secret-world.js';
import { buildWorld } from './world.js';

export interface ReconcilerDeps {
  clients: KubeClients;
  sandboxes: {
    get(ns: string | undefined, name: string): KataSandbox | undefined;
    list(): KataSandbox[];
  };
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

const escapePointer = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * Reads one sandbox from the cache, plans, and carries out the plan. Bindings this process made
 * and the cache has not shown yet still count as load, so a lagging watch cannot overbook a node.
 */
export class SandboxReconciler {
  private readonly pendingBinds = new Map<string, { node: string; memoryMiB: number }>();

  constructor(private readonly deps: ReconcilerDeps) {}

  reconcile = async (key: string, signal: AbortSignal): Promise<ReconcileResult | void> => {
    const { namespace, name } = splitKey(key);
    const sb = this.deps.sandboxes.get(namespace, name);
    if (!sb) {
      this.pendingBinds.delete(key);
      return;
    }
    if (sb.metadata.labels?.[NODE_LABEL]) this.pendingBinds.delete(key);
    const now = this.deps.now?.() ?? new Date();
    const world = buildWorld(
      this.deps.leases.list(),
      this.deps.nodes.list(),
      this.deps.sandboxes.list(),
      this.pendingLoad(),
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
      if (!done) return { requeueAfterMs: 0 };
    }
    return plan.requeueAfterMs === undefined ? undefined : { requeueAfterMs: plan.requeueAfterMs };
  };

  private pendingLoad(): Map<string, NodeLoad> {
    const load = new Map<string, NodeLoad>();
    for (const [key, { node, memoryMiB }] of this.pendingBinds) {
      const { namespace, name } = splitKey(key);
      // Once the cache shows the binding, the sandbox is counted there already.
      if (this.deps.sandboxes.get(namespace, name)?.metadata.labels?.[NODE_LABEL]) continue;
      const l = load.get(node) ?? { sandboxes: 0, memoryMiB: 0 };
      l.sandboxes += 1;
      l.memoryMiB += memoryMiB;
      load.set(node, l);
    }
    return load;
  }

  /** Returns false when the object moved under us and the key should be looked at afresh. */
  private async execute(
    sb: KataSandbox,
    key: string,
    action: Action,
    signal: AbortSignal,
  ): Promise<boolean> {
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
        this.pendingBinds.set(key, { node: action.node, memoryMiB: sb.spec.vm?.memoryMiB ?? 512 });
        try {
          await this.bind(sb, action.node, signal);
        } catch (err) {
          this.pendingBinds.delete(key);
          if (isConflict(err) || isNotFound(err)) return false;
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

  /** The node label, set only if the object is still the version the decision was made on. */
  private async bind(sb: KataSandbox, node: string, signal: AbortSignal): Promise<void> {
    const ops = [
      { op: 'test', path: '/metadata/resourceVersion', value: sb.metadata.resourceVersion },
      sb.metadata.labels
        ? { op: 'add', path: `/metadata/labels/${escapePointer(NODE_LABEL)}`, value: node }
        : { op: 'add', path: '/metadata/labels', value: { [NODE_LABEL]: node } },
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

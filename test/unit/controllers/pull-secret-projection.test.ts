import { describe, expect, it } from '@jest/globals';
import type { KataSandbox } from '../../../src/crds/index.js';
import { encodePublicKey, generateX25519KeyPair } from '../../../src/crypto/sealed-box.js';
import {
  nodeKeyOf,
  type NodeKey,
  type ProjectionView,
} from '../../../src/kube/pull-secret-projection.js';
import {
  orphanedProjections,
  planProjection,
  PROJECTION_REFRESH_MS,
  type PullSecretWorld,
} from '../../../src/controllers/pull-secret-projection.js';
import { planSandbox } from '../../../src/controllers/sandbox-plan.js';

const newKey = (): NodeKey => {
  const k = generateX25519KeyPair();
  return nodeKeyOf(k.publicKey, encodePublicKey(k.publicKey));
};
const keyA = newKey();
const keyB = newKey();

function sandbox(
  over: {
    node?: string;
    deleting?: boolean;
    refs?: string[];
    phase?: string;
    started?: string[];
    image?: boolean;
  } = {},
): KataSandbox {
  return {
    apiVersion: 'kata.sandbox.io/v1alpha1',
    kind: 'KataSandbox',
    metadata: {
      name: 'web',
      namespace: 'team',
      uid: 'u1',
      generation: 1,
      finalizers: ['kata.sandbox.io/node-cleanup'],
      labels: over.node ? { 'kata.sandbox.io/node': over.node } : {},
      ...(over.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: {
      imagePullSecrets: (over.refs ?? ['regcred']).map((name) => ({ name })),
      containers: [
        over.image === false
          ? { name: 'main', rootfs: { hostPath: { path: '/r' } } }
          : { name: 'main', image: 'reg:5000/private/app:1' },
      ],
    } as KataSandbox['spec'],
    status: {
      ...(over.phase && { phase: over.phase }),
      containers: (over.started ?? []).map((name) => ({
        name,
        state: 'Running',
        restartCount: 0,
      })),
    } as KataSandbox['status'],
  };
}

const world = (
  keys: Record<string, NodeKey>,
  projection?: Partial<ProjectionView>,
): PullSecretWorld => ({
  nodeKey: (n) => keys[n],
  projection: (uid) =>
    projection && uid === 'u1'
      ? {
          node: 'a',
          uid: 'u1',
          namespace: 'team',
          name: 'web',
          fingerprint: keyA.fingerprint,
          ...projection,
        }
      : undefined,
});

describe('planProjection', () => {
  it('creates the projection once the sandbox is bound to a node that published a key', () => {
    expect(planProjection(sandbox({ node: 'a' }), world({ a: keyA }))).toEqual({
      actions: [{ kind: 'projectPullSecrets', node: 'a', key: keyA, why: 'missing' }],
    });
    // Not before binding, and not for a node without a key (its agent waits and says why).
    expect(planProjection(sandbox(), world({ a: keyA }))).toEqual({ actions: [] });
    expect(planProjection(sandbox({ node: 'a' }), world({ b: keyB }))).toEqual({ actions: [] });
  });

  it("re-seals when the node's key changes, or the sandbox's node is another", () => {
    expect(planProjection(sandbox({ node: 'a' }), world({ a: keyB }, {}))).toEqual({
      actions: [{ kind: 'projectPullSecrets', node: 'a', key: keyB, why: 'keyChanged' }],
    });
    expect(planProjection(sandbox({ node: 'b' }), world({ b: keyB }, {}))).toEqual({
      actions: [{ kind: 'projectPullSecrets', node: 'b', key: keyB, why: 'nodeChanged' }],
    });
    // Moved to a node without a key: the old node's projection goes.
    expect(planProjection(sandbox({ node: 'b' }), world({ a: keyA }, {}))).toEqual({
      actions: [{ kind: 'deleteProjection', uid: 'u1', why: 'sandbox moved to node b' }],
    });
  });

  it('re-reads the Secrets while an image container has not started, then leaves it', () => {
    expect(planProjection(sandbox({ node: 'a' }), world({ a: keyA }, {}))).toEqual({
      actions: [{ kind: 'projectPullSecrets', node: 'a', key: keyA, why: 'refresh' }],
      requeueAfterMs: PROJECTION_REFRESH_MS,
    });
    expect(
      planProjection(sandbox({ node: 'a', started: ['main'] }), world({ a: keyA }, {})),
    ).toEqual({ actions: [] });
  });

  it('deletes the projection on deletion, at the end, and when nothing needs it', () => {
    const del = (why: string) => ({ actions: [{ kind: 'deleteProjection', uid: 'u1', why }] });
    const w = world({ a: keyA }, {});
    expect(planProjection(sandbox({ node: 'a', deleting: true }), w)).toEqual(
      del('sandbox is being deleted'),
    );
    expect(planProjection(sandbox({ node: 'a', phase: 'Failed' }), w)).toEqual(
      del('sandbox Failed'),
    );
    expect(planProjection(sandbox({ node: 'a', phase: 'Succeeded' }), w)).toEqual(
      del('sandbox Succeeded'),
    );
    expect(planProjection(sandbox({}), w)).toEqual(del('sandbox is not bound to a node'));
    expect(planProjection(sandbox({ node: 'a', refs: [] }), w)).toEqual(
      del('sandbox names no imagePullSecrets'),
    );
    expect(planProjection(sandbox({ node: 'a', image: false }), w)).toEqual(
      del('sandbox pulls no image'),
    );
    // Nothing to delete: nothing to do.
    expect(planProjection(sandbox({ node: 'a', deleting: true }), world({ a: keyA }))).toEqual({
      actions: [],
    });
    expect(planProjection(sandbox({ node: 'a', refs: [] }), world({ a: keyA }))).toEqual({
      actions: [],
    });
  });
});

describe('planSandbox with pull secrets', () => {
  const now = new Date();
  const lease = {
    renewTime: new Date(now.getTime() - 1000),
    leaseDurationSeconds: 40,
    capacitySandboxes: 4,
    capacityMemoryMiB: 4096,
  };
  const base = {
    nodes: [{ name: 'a', lease }],
    loadOf: () => ({ sandboxes: 0, memoryMiB: 0 }),
    now,
  };

  it('appends the projection after the lifecycle actions, and requeues at the earlier time', () => {
    const sb = sandbox({ node: 'a' });
    sb.status = {
      ...sb.status,
      phase: 'Creating',
      nodeName: 'a',
      observedGeneration: 1,
      conditions: [
        {
          type: 'Scheduled',
          status: 'True',
          reason: 'Scheduled',
          message: 'placed on node a',
          lastTransitionTime: now.toISOString(),
        },
      ],
    } as KataSandbox['status'];
    const without = planSandbox(sb, base);
    const plan = planSandbox(sb, { ...base, pullSecrets: world({ a: keyA }) });
    expect(plan.actions).toEqual([
      ...without.actions,
      { kind: 'projectPullSecrets', node: 'a', key: keyA, why: 'missing' },
    ]);
    expect(plan.requeueAfterMs).toBe(without.requeueAfterMs);
    const refresh = planSandbox(sb, { ...base, pullSecrets: world({ a: keyA }, {}) });
    expect(refresh.requeueAfterMs).toBe(
      Math.min(without.requeueAfterMs ?? Infinity, PROJECTION_REFRESH_MS),
    );
  });

  it("deletes the projection in the deletion path, next to the controller's finalizer work", () => {
    const plan = planSandbox(sandbox({ deleting: true }), {
      ...base,
      pullSecrets: world({ a: keyA }, {}),
    });
    expect(plan.actions).toContainEqual({ kind: 'removeFinalizer', why: 'never scheduled' });
    expect(plan.actions.at(-1)).toEqual({
      kind: 'deleteProjection',
      uid: 'u1',
      why: 'sandbox is being deleted',
    });
  });
});

describe('orphanedProjections', () => {
  const p = (uid: string, namespace: string): ProjectionView => ({
    node: 'a',
    uid,
    namespace,
    name: `sb-${uid}`,
    fingerprint: 'f',
  });

  it('finds projections without a sandbox, only in the watched namespace', () => {
    const live = sandbox();
    const all = [p('u1', 'team'), p('gone', 'team'), p('other', 'elsewhere')];
    expect(orphanedProjections(all, [live], '').map((x) => x.uid)).toEqual(['gone', 'other']);
    expect(orphanedProjections(all, [live], 'team').map((x) => x.uid)).toEqual(['gone']);
    expect(orphanedProjections(all, [], 'nobody')).toEqual([]);
  });
});

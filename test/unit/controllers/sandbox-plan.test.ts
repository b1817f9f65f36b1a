import { describe, expect, it } from '@jest/globals';
import type { KataSandbox } from '../../../src/crds/index.js';
import type { NodeView } from '../../../src/controllers/node-candidates.js';
import { planSandbox, type World } from '../../../src/controllers/sandbox-plan.js';

const now = new Date('2026-11-28T12:00:00Z');
const lease = (ageMs: number) => ({
  renewTime: new Date(now.getTime() - ageMs),
  leaseDurationSeconds: 40,
  capacitySandboxes: 4,
  capacityMemoryMiB: 4096,
});
const world = (nodes: NodeView[], load: Record<string, number> = {}): World => ({
  nodes,
  loadOf: (n) => ({ sandboxes: load[n] ?? 0, memoryMiB: (load[n] ?? 0) * 512 }),
  now,
});

function sandbox(
  over: {
    finalizers?: string[];
    node?: string;
    deleting?: boolean;
    status?: KataSandbox['status'];
  } = {},
): KataSandbox {
  return {
    apiVersion: 'kata.sandbox.io/v1alpha1',
    kind: 'KataSandbox',
    metadata: {
      name: 'web',
      namespace: 'default',
      uid: 'u1',
      generation: 1,
      resourceVersion: '10',
      finalizers: over.finalizers ?? ['kata.sandbox.io/node-cleanup'],
      labels: over.node ? { 'kata.sandbox.io/node': over.node } : {},
      ...(over.deleting ? { deletionTimestamp: new Date(now.getTime() - 1000) } : {}),
    },
    spec: {
      containers: [{ name: 'main', rootfs: { hostPath: { path: '/r' } } }],
      vm: { memoryMiB: 512 },
    } as KataSandbox['spec'],
    status: over.status,
  };
}

describe('planSandbox', () => {
  it('binds a sandbox without the finalizer with the finalizer in the same write', () => {
    const plan = planSandbox(
      sandbox({ finalizers: [] }),
      world([{ name: 'a', lease: lease(1000) }]),
    );
    expect(plan.actions.map((a) => a.kind)).toEqual(['bind', 'applyStatus', 'event']);
    expect(plan.actions[0]).toEqual({ kind: 'bind', node: 'a', withFinalizer: true });
  });

  it('adds no finalizer to a sandbox that cannot be scheduled or has ended unbound', () => {
    const pending = planSandbox(sandbox({ finalizers: [] }), world([]));
    expect(pending.actions.map((a) => a.kind)).toEqual(['applyStatus', 'event']);
    const ended = planSandbox(
      sandbox({ finalizers: [], status: { phase: 'Failed' } as KataSandbox['status'] }),
      world([{ name: 'a', lease: lease(1000) }]),
    );
    expect(ended.actions).toEqual([]);
  });

  it('gives a bound sandbox without the finalizer its finalizer back first, and nothing else', () => {
    expect(
      planSandbox(
        sandbox({ finalizers: [], node: 'a' }),
        world([{ name: 'a', lease: lease(1000) }]),
      ),
    ).toEqual({ actions: [{ kind: 'addFinalizer' }] });
  });

  it('binds to the least loaded fresh node with Scheduled=True and an Event', () => {
    const plan = planSandbox(
      sandbox(),
      world(
        [
          { name: 'a', lease: lease(1000) },
          { name: 'b', lease: lease(1000) },
        ],
        { a: 2 },
      ),
    );
    expect(plan.actions[0]).toEqual({ kind: 'bind', node: 'b' });
    expect(plan.actions[1]).toMatchObject({
      kind: 'applyStatus',
      status: {
        phase: 'Scheduled',
        nodeName: 'b',
        observedGeneration: 1,
        conditions: [
          {
            type: 'Scheduled',
            status: 'True',
            reason: 'Scheduled',
            lastTransitionTime: now.toISOString(),
          },
        ],
      },
    });
    expect(plan.actions[2]).toMatchObject({ kind: 'event', type: 'Normal', reason: 'Scheduled' });
  });

  it('stays Pending/Unschedulable with the reason, once, and retries later', () => {
    const first = planSandbox(sandbox(), world([{ name: 'a', lease: lease(60_000) }]));
    expect(first.actions).toEqual([
      expect.objectContaining({
        kind: 'applyStatus',
        status: expect.objectContaining({
          phase: 'Pending',
          reason: 'Unschedulable',
          message: '0/1 nodes are available: 1 lease expired',
        }),
      }),
      expect.objectContaining({ kind: 'event', type: 'Warning', reason: 'FailedScheduling' }),
    ]);
    expect(first.requeueAfterMs).toBeGreaterThan(0);
    const status = (first.actions[0] as { status: KataSandbox['status'] }).status;
    const again = planSandbox(sandbox({ status }), world([{ name: 'a', lease: lease(60_000) }]));
    expect(again.actions).toEqual([]);
  });

  it('marks a bound sandbox Failed/NodeLost when its node lease expired', () => {
    const status = {
      phase: 'Running' as const,
      nodeName: 'a',
      observedGeneration: 1,
      conditions: [
        {
          type: 'Scheduled',
          status: 'True' as const,
          reason: 'Scheduled',
          message: 'placed on node a',
          lastTransitionTime: 't0',
        },
        {
          type: 'Ready',
          status: 'True' as const,
          reason: 'Ready',
          message: '',
          lastTransitionTime: 't0',
        },
      ],
    };
    const plan = planSandbox(
      sandbox({ node: 'a', status }),
      world([{ name: 'a', lease: lease(45_000) }]),
    );
    expect(plan.actions).toEqual([
      expect.objectContaining({
        kind: 'applyStatus',
        status: expect.objectContaining({ phase: 'Failed', reason: 'NodeLost' }),
      }),
      expect.objectContaining({ kind: 'event', reason: 'NodeLost' }),
    ]);
  });

  it('while the node lives, follows its conditions and wakes up when the lease would expire', () => {
    const status = {
      phase: 'Creating' as const,
      nodeName: 'a',
      observedGeneration: 1,
      conditions: [
        {
          type: 'Scheduled',
          status: 'True' as const,
          reason: 'Scheduled',
          message: 'placed on node a',
          lastTransitionTime: 't0',
        },
        {
          type: 'Ready',
          status: 'True' as const,
          reason: 'Ready',
          message: '',
          lastTransitionTime: 't1',
        },
      ],
    };
    const plan = planSandbox(
      sandbox({ node: 'a', status }),
      world([{ name: 'a', lease: lease(10_000) }]),
    );
    expect(plan.actions).toEqual([
      {
        kind: 'applyStatus',
        status: expect.objectContaining({ phase: 'Running', conditions: [status.conditions[0]] }),
      },
    ]);
    expect(plan.requeueAfterMs).toBe(30_000);
  });

  it('on deletion: removes the finalizer itself when never scheduled or the node is lost, else waits', () => {
    expect(planSandbox(sandbox({ deleting: true }), world([])).actions[0]).toEqual({
      kind: 'removeFinalizer',
      why: 'never scheduled',
    });
    const lost = planSandbox(
      sandbox({ deleting: true, node: 'a' }),
      world([{ name: 'a', lease: lease(90_000) }]),
    );
    expect(lost.actions[0]).toEqual({ kind: 'removeFinalizer', why: 'node a is lost' });
    const alive = planSandbox(
      sandbox({ deleting: true, node: 'a' }),
      world([{ name: 'a', lease: lease(1_000) }]),
    );
    expect(alive.actions.map((a) => a.kind)).toEqual(['applyStatus']);
    expect(alive.actions[0]).toMatchObject({ status: { phase: 'Terminating' } });
  });
});

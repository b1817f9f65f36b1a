import { describe, expect, it } from '@jest/globals';
import { warmPoolReady } from '../../../src/controllers/warm-pool-ready.js';
import type { KataWarmPool, WarmPoolNodeStatus } from '../../../src/crds/index.js';

const now = new Date('2026-12-04T09:00:00Z');
const pool = (nodes?: WarmPoolNodeStatus[], replicasPerNode = 2, prev?: string): KataWarmPool => ({
  apiVersion: 'kata.sandbox.io/v1alpha1',
  kind: 'KataWarmPool',
  metadata: { name: 'p', generation: 3 },
  spec: { vm: {}, replicasPerNode },
  status: {
    ...(nodes && { nodes }),
    ...(prev && {
      conditions: [
        {
          type: 'Ready',
          status: prev as 'True',
          reason: 'X',
          message: '',
          lastTransitionTime: '2026-12-01T00:00:00Z',
        },
      ],
    }),
  },
});

describe('warmPoolReady', () => {
  it('True once every reporting node has its desired VMs ready', () => {
    const c = warmPoolReady(
      pool([
        { node: 'a', desired: 2, ready: 2, booting: 0 },
        { node: 'b', desired: 1, ready: 1, message: 'capacity allows 1 of 2' },
      ]),
      now,
    );
    expect(c).toMatchObject({ status: 'True', reason: 'Ready', observedGeneration: 3 });
    expect(c.message).toContain('1 keep fewer for want of capacity');
    expect(c.lastTransitionTime).toBe(now.toISOString());
  });

  it('False while a node fills, naming it; NoNodes before any report; CapacityShort everywhere', () => {
    const filling = warmPoolReady(pool([{ node: 'a', desired: 2, ready: 1, booting: 1 }]), now);
    expect(filling).toMatchObject({ status: 'False', reason: 'Filling' });
    expect(filling.message).toContain('a: 1/2 ready, 1 booting');
    expect(warmPoolReady(pool([]), now)).toMatchObject({ status: 'False', reason: 'NoNodes' });
    const short = warmPoolReady(
      pool([{ node: 'a', desired: 0, ready: 0, message: 'the node is full' }]),
      now,
    );
    expect(short).toMatchObject({ status: 'False', reason: 'CapacityShort' });
    expect(short.message).toContain('the node is full');
    expect(warmPoolReady(pool([], 0), now)).toMatchObject({
      status: 'True',
      reason: 'NothingToKeep',
    });
  });

  it('keeps lastTransitionTime while the status stays', () => {
    const c = warmPoolReady(pool([{ node: 'a', desired: 2, ready: 2 }], 2, 'True'), now);
    expect(c.lastTransitionTime).toBe('2026-12-01T00:00:00Z');
    const flipped = warmPoolReady(pool([{ node: 'a', desired: 2, ready: 0 }], 2, 'True'), now);
    expect(flipped.lastTransitionTime).toBe(now.toISOString());
  });
});

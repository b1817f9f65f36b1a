import { describe, expect, it } from '@jest/globals';
import type { V1Lease } from '@kubernetes/client-node';
import {
  canAcquire,
  capacityAnnotations,
  leaseCapacity,
  freshUntil,
  leaseExpiry,
  leaseIsFresh,
  nodeLeaseName,
  nodeOfLease,
  renewedLease,
  timeMillis,
} from '../../../src/kube/lease.js';

const T0 = Date.parse('2026-03-01T10:00:00Z');
const lease = (
  holder: string | undefined,
  renewAt: number | string | undefined,
  seconds = 40,
): V1Lease => ({
  metadata: { name: 'kata-node-n1', namespace: 'kata-system', resourceVersion: '7' },
  spec: {
    holderIdentity: holder,
    leaseDurationSeconds: seconds,
    renewTime: (typeof renewAt === 'number'
      ? new Date(renewAt).toISOString()
      : renewAt) as unknown as Date,
  },
});

describe('lease names', () => {
  it('maps nodes to kata-node-<node> and back', () => {
    expect(nodeLeaseName('worker-1')).toBe('kata-node-worker-1');
    expect(nodeOfLease({ metadata: { name: 'kata-node-worker-1' } })).toBe('worker-1');
    expect(nodeOfLease({ metadata: { name: 'kata-controller' } })).toBeUndefined();
  });
});

describe('leaseIsFresh', () => {
  it('is fresh strictly before renewTime + duration (renewTime read back as a string)', () => {
    const l = lease('n1', T0);
    expect(leaseExpiry(l)).toBe(T0 + 40_000);
    expect(leaseIsFresh(l, T0 + 39_999)).toBe(true);
    expect(leaseIsFresh(l, T0 + 40_000)).toBe(false);
  });

  it('accepts microsecond strings and Dates', () => {
    expect(timeMillis('2026-03-01T10:00:00.123456Z')).toBe(T0 + 123);
    expect(timeMillis(new Date(T0))).toBe(T0);
    expect(timeMillis('garbage')).toBeUndefined();
  });

  it('is never fresh without renewTime, duration or a Lease', () => {
    expect(leaseIsFresh(lease('n1', undefined), T0)).toBe(false);
    expect(leaseIsFresh({ spec: { renewTime: new Date(T0) } }, T0)).toBe(false);
    expect(leaseIsFresh(undefined, T0)).toBe(false);
  });

  it("is one rule for the Lease, the controller's judgement and its node view (freshUntil)", () => {
    expect(freshUntil(T0, 40)).toBe(T0 + 40_000);
    expect(freshUntil(T0, 0)).toBeUndefined();
    expect(freshUntil(undefined, 40)).toBeUndefined();
  });
});

describe('canAcquire', () => {
  it('allows a free, own or expired Lease; refuses a fresh one held by another', () => {
    expect(canAcquire(undefined, 'me', T0)).toBe(true);
    expect(canAcquire(lease(undefined, T0, 15), 'me', T0)).toBe(true);
    expect(canAcquire(lease('', T0, 15), 'me', T0)).toBe(true);
    expect(canAcquire(lease('me', T0, 15), 'me', T0 + 1000)).toBe(true);
    expect(canAcquire(lease('other', T0, 15), 'me', T0 + 14_999)).toBe(false);
    expect(canAcquire(lease('other', T0, 15), 'me', T0 + 15_000)).toBe(true);
  });
});

describe('capacity annotations', () => {
  it('round-trip and reject missing or non-numeric values', () => {
    const annotations = capacityAnnotations({ sandboxes: 8, memoryMiB: 4096.7 });
    expect(annotations).toEqual({
      'kata.sandbox.io/capacity-sandboxes': '8',
      'kata.sandbox.io/capacity-memory-mib': '4096',
    });
    expect(leaseCapacity({ metadata: { annotations } })).toEqual({ sandboxes: 8, memoryMiB: 4096 });
    expect(
      leaseCapacity({ metadata: { annotations: { 'kata.sandbox.io/capacity-sandboxes': '8' } } }),
    ).toBeUndefined();
    expect(
      leaseCapacity({
        metadata: {
          annotations: {
            'kata.sandbox.io/capacity-sandboxes': 'x',
            'kata.sandbox.io/capacity-memory-mib': '1',
          },
        },
      }),
    ).toBeUndefined();
  });
});

describe('renewedLease', () => {
  const ref = { namespace: 'kata-system', name: 'kata-controller' };
  const now = new Date(T0 + 5000);

  it('creates a Lease with acquire and renew time in microsecond form', () => {
    const l = renewedLease(undefined, ref, 'me', 15, now);
    expect(l.spec).toMatchObject({
      holderIdentity: 'me',
      leaseDurationSeconds: 15,
      leaseTransitions: 0,
    });
    expect(JSON.parse(JSON.stringify(l)).spec.renewTime).toBe('2026-03-01T10:00:05.000000Z');
    expect(l.metadata?.resourceVersion).toBeUndefined();
  });

  it('keeps acquireTime and the resourceVersion on renewal by the same holder', () => {
    const prev: V1Lease = {
      metadata: {
        ...ref,
        resourceVersion: '9',
        annotations: { keep: 'me' },
        managedFields: [{ manager: 'x' }],
      },
      spec: {
        holderIdentity: 'me',
        acquireTime: '2026-03-01T09:00:00.000000Z' as unknown as Date,
        leaseTransitions: 2,
      },
    };
    const l = renewedLease(prev, ref, 'me', 15, now, { a: 'b' });
    expect(l.metadata?.resourceVersion).toBe('9');
    expect(l.metadata?.annotations).toEqual({ keep: 'me', a: 'b' });
    expect(l.metadata?.managedFields).toBeUndefined();
    expect(l.spec?.acquireTime).toBe('2026-03-01T09:00:00.000000Z');
    expect(l.spec?.leaseTransitions).toBe(2);
  });

  it('counts a transition whenever the holder changes, a released Lease included', () => {
    const held: V1Lease = {
      metadata: { ...ref, resourceVersion: '9' },
      spec: { holderIdentity: 'old', leaseTransitions: 2 },
    };
    expect(renewedLease(held, ref, 'me', 15, now).spec?.leaseTransitions).toBe(3);
    const released: V1Lease = {
      metadata: { ...ref, resourceVersion: '9' },
      spec: { leaseTransitions: 3 },
    };
    expect(renewedLease(released, ref, 'me', 15, now).spec?.leaseTransitions).toBe(4);
  });
});

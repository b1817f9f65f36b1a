import { describe, expect, it } from '@jest/globals';
import { V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import { LeaseObservations } from '../../../src/controllers/lease-observations.js';
import { nodeViews } from '../../../src/controllers/world.js';

const T0 = Date.parse('2026-12-03T09:00:00Z');
const IN_2030 = Date.parse('2030-01-01T00:00:00Z');

function lease(renewAt: number | undefined, durationSeconds = 40, name = 'kata-node-a'): V1Lease {
  return {
    metadata: {
      name,
      namespace: 'kata-system',
      annotations: {
        'kata.sandbox.io/capacity-sandboxes': '4',
        'kata.sandbox.io/capacity-memory-mib': '4096',
      },
    },
    spec: {
      holderIdentity: 'a',
      leaseDurationSeconds: durationSeconds,
      // read back from the API server as a string
      ...(renewAt !== undefined && {
        renewTime: new V1MicroTime(renewAt).toISOString() as unknown as V1MicroTime,
      }),
    },
  };
}

describe('LeaseObservations', () => {
  it('a renewTime in the future counts as the time it was first seen, and goes stale after the duration', () => {
    const obs = new LeaseObservations();
    const l = lease(IN_2030);
    obs.observe(l, T0);
    expect(obs.judge(l, T0 + 1_000)).toEqual({ renewedAt: T0, durationSeconds: 40 });
    expect(obs.isFresh(l, T0 + 39_999)).toBe(true);
    expect(obs.isFresh(l, T0 + 40_000)).toBe(false);
    // Seen again unchanged (a relist): still judged from the first sighting.
    obs.observe(l, T0 + 30_000);
    expect(obs.isFresh(l, T0 + 40_000)).toBe(false);
  });

  it('a renewTime in the past keeps its age (no fresh start for an old Lease)', () => {
    const obs = new LeaseObservations();
    const l = lease(T0 - 35_000);
    obs.observe(l, T0);
    expect(obs.judge(l, T0).renewedAt).toBe(T0 - 35_000);
    expect(obs.isFresh(l, T0 + 4_999)).toBe(true);
    expect(obs.isFresh(l, T0 + 5_000)).toBe(false);
  });

  it('a renewTime seen to change is a renewal at the time it was seen', () => {
    const obs = new LeaseObservations();
    obs.observe(lease(IN_2030), T0);
    const renewed = lease(IN_2030 + 10_000);
    obs.observe(renewed, T0 + 30_000);
    expect(obs.judge(renewed, T0 + 50_000).renewedAt).toBe(T0 + 30_000);
    expect(obs.isFresh(renewed, T0 + 69_999)).toBe(true);
    expect(obs.isFresh(renewed, T0 + 70_000)).toBe(false);
  });

  it('a Lease not observed yet counts as seen now; a forgotten one starts over', () => {
    const obs = new LeaseObservations();
    const l = lease(IN_2030);
    expect(obs.judge(l, T0).renewedAt).toBe(T0);
    obs.observe(l, T0);
    obs.forget(l);
    expect(obs.judge(l, T0 + 50_000).renewedAt).toBe(T0 + 50_000);
  });

  it('caps leaseDurationSeconds at the controller maximum', () => {
    const obs = new LeaseObservations(3);
    const l = lease(IN_2030, 10 ** 9);
    obs.observe(l, T0);
    expect(obs.judge(l, T0).durationSeconds).toBe(3);
    expect(obs.isFresh(l, T0 + 2_999)).toBe(true);
    expect(obs.isFresh(l, T0 + 3_000)).toBe(false);
    expect(new LeaseObservations(40).judge(lease(T0, 10), T0).durationSeconds).toBe(10);
  });

  it('is never fresh without renewTime or duration', () => {
    const obs = new LeaseObservations();
    expect(obs.isFresh(lease(undefined), T0)).toBe(false);
    expect(obs.isFresh(lease(T0, 0), T0)).toBe(false);
  });

  it('tells Leases apart by namespace and name', () => {
    const obs = new LeaseObservations();
    obs.observe(lease(IN_2030, 40, 'kata-node-a'), T0);
    obs.observe(lease(IN_2030, 40, 'kata-node-b'), T0 + 20_000);
    expect(obs.judge(lease(IN_2030, 40, 'kata-node-a'), T0 + 50_000).renewedAt).toBe(T0);
    expect(obs.judge(lease(IN_2030, 40, 'kata-node-b'), T0 + 50_000).renewedAt).toBe(T0 + 20_000);
  });
});

describe('nodeViews', () => {
  it('carries the judged renewal and duration, not what the Lease claims', () => {
    const obs = new LeaseObservations(40);
    const l = lease(IN_2030, 3600);
    obs.observe(l, T0);
    const [view] = nodeViews([l], [], (x) => obs.judge(x, T0 + 1_000));
    expect(view?.name).toBe('a');
    expect(view?.lease).toEqual({
      renewTime: new Date(T0),
      leaseDurationSeconds: 40,
      capacitySandboxes: 4,
      capacityMemoryMiB: 4096,
    });
  });
});

// Node heartbeat Leases and leader election against the real API server. Each test uses its own
// namespace and Lease names, so the controller's real kata-system Leases are never touched.
import { beforeAll, describe, expect, it } from '@jest/globals';
import { CoordinationV1Api, V1MicroTime } from '@kubernetes/client-node';
import { callApi, isConflict, makeClients, type KubeClients } from '../../src/kube/kube-client.js';
import { LeaderElector } from '../../src/kube/leader-election.js';
import {
  leaseCapacity,
  leaseIsFresh,
  nodeLeaseName,
  renewedLease,
  timeMillis,
  type NodeAllocation,
} from '../../src/kube/lease.js';
import { NodeHeartbeat } from '../../src/kube/node-heartbeat.js';
import { adminKubeConfig, freshNamespace } from './cluster.js';

async function until(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let clients: KubeClients;
let coord: CoordinationV1Api;
let ns: string;

beforeAll(async () => {
  clients = makeClients(await adminKubeConfig());
  coord = clients.coordination;
  ns = await freshNamespace('kube-lease');
});

describe('NodeHeartbeat', () => {
  it('creates kata-node-<node> with holder, duration, renewTime and capacity, then renews it', async () => {
    let sandboxes = 4;
    let allocated: NodeAllocation | undefined;
    const hb = new NodeHeartbeat({
      clients,
      nodeName: 'n1',
      namespace: ns,
      capacity: () => ({ sandboxes, memoryMiB: 8192 }),
      allocated: () => allocated,
      renewIntervalMs: 300,
    });
    hb.start();
    try {
      await until(() => hb.lastRenewed > 0, 'first renewal');
      const first = await coord.readNamespacedLease({ namespace: ns, name: nodeLeaseName('n1') });
      expect(first.spec).toMatchObject({ holderIdentity: 'n1', leaseDurationSeconds: 40 });
      // MicroTime reads back as a string with microseconds.
      expect(String(first.spec?.renewTime)).toMatch(/\.\d{6}Z$/);
      expect(leaseIsFresh(first, Date.now())).toBe(true);
      expect(leaseCapacity(first)).toEqual({ sandboxes: 4, memoryMiB: 8192 });
      expect(Object.keys(first.metadata?.annotations ?? {})).not.toContain(
        'kata.sandbox.io/allocated-memory-mib',
      );

      sandboxes = 2;
      allocated = { sandboxes: 1, memoryMiB: 768, vcpus: 2 };
      const t1 = timeMillis(first.spec?.renewTime as unknown as string) ?? 0;
      let later = first;
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        later = await coord.readNamespacedLease({ namespace: ns, name: nodeLeaseName('n1') });
        if (
          (timeMillis(later.spec?.renewTime as unknown as string) ?? 0) > t1 &&
          leaseCapacity(later)?.sandboxes === 2
        )
          break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(timeMillis(later.spec?.renewTime as unknown as string)).toBeGreaterThan(t1);
      expect(leaseCapacity(later)).toEqual({ sandboxes: 2, memoryMiB: 8192 });
      expect(later.metadata?.annotations).toMatchObject({
        'kata.sandbox.io/allocated-sandboxes': '1',
        'kata.sandbox.io/allocated-memory-mib': '768',
        'kata.sandbox.io/allocated-vcpus': '2',
      });
    } finally {
      await hb.stop();
    }
  });

  it('keeps annotations others added', async () => {
    const hb = new NodeHeartbeat({
      clients,
      nodeName: 'n2',
      namespace: ns,
      capacity: () => ({ sandboxes: 1, memoryMiB: 1 }),
    });
    await hb.renewOnce();
    await coord.patchNamespacedLease({
      namespace: ns,
      name: nodeLeaseName('n2'),
      body: [{ op: 'add', path: '/metadata/annotations/extra', value: 'kept' }],
    });
    await hb.renewOnce();
    const lease = await coord.readNamespacedLease({ namespace: ns, name: nodeLeaseName('n2') });
    expect(lease.metadata?.annotations?.extra).toBe('kept');
  });
});

describe('LeaderElector', () => {
  const timing = { leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 500 };

  function candidate(id: string, leaseName: string, log: string[]) {
    return new LeaderElector({
      clients,
      identity: id,
      namespace: ns,
      leaseName,
      ...timing,
      onStartedLeading: () => log.push(`start:${id}`),
      onStoppedLeading: () => log.push(`stop:${id}`),
    });
  }

  it('elects exactly one of two candidates; the other takes over when the leader stops', async () => {
    const log: string[] = [];
    const a = candidate('a', 'elect-1', log);
    const b = candidate('b', 'elect-1', log);
    a.start();
    b.start();
    try {
      await until(() => a.isLeader() || b.isLeader(), 'a leader');
      // Several retry periods with both contending: never two leaders.
      for (let i = 0; i < 20; i++) {
        expect(a.isLeader() && b.isLeader()).toBe(false);
        await new Promise((r) => setTimeout(r, 100));
      }
      const [leader, follower] = a.isLeader() ? [a, b] : [b, a];
      expect(follower.leader).toBe(leader === a ? 'a' : 'b');
      await leader.stop();
      const released = await coord.readNamespacedLease({ namespace: ns, name: 'elect-1' });
      expect(released.spec?.holderIdentity ?? '').toBe('');
      await until(() => follower.isLeader(), 'takeover');
      const held = await coord.readNamespacedLease({ namespace: ns, name: 'elect-1' });
      expect(held.spec?.holderIdentity).toBe(follower === a ? 'a' : 'b');
      expect(held.spec?.leaseTransitions).toBe(1);
    } finally {
      await a.stop();
      await b.stop();
    }
    expect(log).toHaveLength(4);
  });

  it('takes over a Lease whose holder vanished without releasing, only after it expires', async () => {
    const log: string[] = [];
    const now = new V1MicroTime();
    await coord.createNamespacedLease({
      namespace: ns,
      body: {
        metadata: { name: 'elect-2' },
        spec: {
          holderIdentity: 'ghost',
          leaseDurationSeconds: 3,
          renewTime: now as never,
          acquireTime: now as never,
        },
      },
    });
    const c = candidate('c', 'elect-2', log);
    c.start();
    try {
      await until(() => c.isLeader(), 'takeover from ghost');
      // The Lease's own record says when c acquired it: not before the ghost's term ran out.
      const held = await coord.readNamespacedLease({ namespace: ns, name: 'elect-2' });
      expect(held.spec?.holderIdentity).toBe('c');
      const acquired = new Date(held.spec?.acquireTime as unknown as string).getTime();
      expect(acquired).toBeGreaterThanOrEqual(new Date(now).getTime() + 3_000);
    } finally {
      await c.stop();
    }
  });

  it('does not take a Lease freshly held by another, and sees the holder', async () => {
    const d = candidate('d', 'elect-3', []);
    expect(await d.tryAcquireOrRenew()).toBe(true);
    const lease = await coord.readNamespacedLease({ namespace: ns, name: 'elect-3' });
    await coord.replaceNamespacedLease({
      namespace: ns,
      name: 'elect-3',
      body: {
        ...lease,
        spec: { ...lease.spec, holderIdentity: 'intruder', renewTime: new V1MicroTime() },
      },
    });
    expect(await d.tryAcquireOrRenew()).toBe(false);
    expect(d.leader).toBe('intruder');
  });

  it('a write based on a stale read is refused with 409, the lost-race signal', async () => {
    const e = candidate('e', 'elect-4', []);
    expect(await e.tryAcquireOrRenew()).toBe(true);
    const stale = await coord.readNamespacedLease({ namespace: ns, name: 'elect-4' });
    expect(await e.tryAcquireOrRenew()).toBe(true); // moves the resourceVersion on
    const body = renewedLease(stale, { namespace: ns, name: 'elect-4' }, 'e', 4, new Date());
    const err = await callApi('replace', () =>
      coord.replaceNamespacedLease({ namespace: ns, name: 'elect-4', body }),
    ).catch((x: unknown) => x);
    expect(isConflict(err)).toBe(true);
  });
});

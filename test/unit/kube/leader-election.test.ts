// The elector's state machine against an in-memory Lease store with the API server's optimistic
// concurrency (a replace with a stale resourceVersion → 409). The real thing: kube-lease.test.ts.
import { describe, expect, it } from '@jest/globals';
import { ApiException, type V1Lease } from '@kubernetes/client-node';
import type { KubeClients } from '../../../src/kube/kube-client.js';
import { LeaderElector } from '../../../src/kube/leader-election.js';

function leaseStore() {
  let lease: V1Lease | undefined;
  let rv = 0;
  let down = false;
  const status = (code: number, reason: string) =>
    new ApiException(code, 'x', JSON.stringify({ code, reason, message: reason }), {});
  const copy = (l: V1Lease): V1Lease => JSON.parse(JSON.stringify(l));
  const coordination = {
    readNamespacedLease: async () => {
      if (down) throw new Error('ECONNREFUSED');
      if (!lease) throw status(404, 'NotFound');
      return copy(lease);
    },
    createNamespacedLease: async ({ body }: { body: V1Lease }) => {
      if (lease) throw status(409, 'AlreadyExists');
      lease = { ...copy(body), metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      return copy(lease);
    },
    replaceNamespacedLease: async ({ body }: { body: V1Lease }) => {
      if (down) throw new Error('ECONNREFUSED');
      if (body.metadata?.resourceVersion !== lease?.metadata?.resourceVersion)
        throw status(409, 'Conflict');
      lease = { ...copy(body), metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      return copy(lease);
    },
  };
  return {
    clients: { coordination } as unknown as Pick<KubeClients, 'coordination'>,
    get: () => lease,
    setDown: (d: boolean) => (down = d),
  };
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const timing = { leaseDurationMs: 1500, renewDeadlineMs: 400, retryPeriodMs: 50 };

describe('LeaderElector (in-memory Lease)', () => {
  it('rejects inconsistent durations', () => {
    const s = leaseStore();
    expect(
      () =>
        new LeaderElector({
          clients: s.clients,
          identity: 'a',
          leaseDurationMs: 10,
          renewDeadlineMs: 10,
        }),
    ).toThrow();
  });

  it('one of two candidates leads; the other takes over after a release', async () => {
    const s = leaseStore();
    const events: string[] = [];
    const mk = (id: string) =>
      new LeaderElector({
        clients: s.clients,
        identity: id,
        ...timing,
        onStartedLeading: () => events.push(`start:${id}`),
        onStoppedLeading: () => events.push(`stop:${id}`),
      });
    const a = mk('a');
    const b = mk('b');
    a.start();
    await until(() => a.isLeader(), 'a leads');
    b.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(b.isLeader()).toBe(false);
    expect(b.leader).toBe('a');
    await a.stop();
    expect(s.get()?.spec?.holderIdentity).toBeUndefined();
    await until(() => b.isLeader(), 'b takes over');
    await b.stop();
    expect(events).toEqual(['start:a', 'stop:a', 'start:b', 'stop:b']);
    expect(s.get()?.spec?.leaseTransitions).toBe(1);
  });

  it('steps down when renewals fail past the renew deadline, aborting the leader signal', async () => {
    const s = leaseStore();
    let leaderSignal: AbortSignal | undefined;
    const a = new LeaderElector({
      clients: s.clients,
      identity: 'a',
      ...timing,
      onStartedLeading: (sig) => (leaderSignal = sig),
    });
    a.start();
    await until(() => a.isLeader(), 'a leads');
    s.setDown(true);
    await until(() => !a.isLeader(), 'a steps down');
    expect(leaderSignal?.aborted).toBe(true);
    s.setDown(false);
    await until(() => a.isLeader(), 'a leads again');
    await a.stop();
  });
});

import { describe, expect, it } from '@jest/globals';
import type { EventsV1Event } from '@kubernetes/client-node';
import { ApiException } from '@kubernetes/client-node';
import { EventRecorder } from '../../../src/kube/events.js';
import type { KubeClients } from '../../../src/kube/kube-client.js';

/** Records what the recorder asks of the events API; can be told to fail. */
function fakeEvents(fail = false) {
  const created: EventsV1Event[] = [];
  const patched: Array<{
    name: string;
    body: { series: { count: number; lastObservedTime: string } };
  }> = [];
  const events = {
    createNamespacedEvent: async ({ body }: { namespace: string; body: EventsV1Event }) => {
      if (fail) throw new ApiException(403, 'x', '{"message":"forbidden"}', {});
      created.push(body);
      return body;
    },
    patchNamespacedEvent: async (p: { name: string; body: never }) => {
      patched.push(p);
      return {};
    },
  };
  return { clients: { events } as unknown as Pick<KubeClients, 'events'>, created, patched };
}

const regarding = {
  kind: 'KataSandbox',
  apiVersion: 'kata.sandbox.io/v1alpha1',
  namespace: 'ns',
  name: 'web',
  uid: 'u1',
};

describe('EventRecorder', () => {
  it('writes an events.k8s.io/v1 Event with the reporting fields', async () => {
    const f = fakeEvents();
    const r = new EventRecorder({
      clients: f.clients,
      reportingController: 'kata.sandbox.io/controller',
      reportingInstance: 'c-1',
    });
    r.normal(regarding, 'Scheduled', 'Schedule', 'assigned to n1');
    await r.flush();
    expect(f.created).toHaveLength(1);
    const e = f.created[0];
    expect(e).toMatchObject({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { namespace: 'ns' },
      reportingController: 'kata.sandbox.io/controller',
      reportingInstance: 'c-1',
      action: 'Schedule',
      reason: 'Scheduled',
      note: 'assigned to n1',
      type: 'Normal',
      regarding,
    });
    expect(e?.metadata?.name).toMatch(/^web\.[0-9a-f]+$/);
    expect(JSON.parse(JSON.stringify(e)).eventTime).toMatch(/\.\d{6}Z$/);
  });

  it('turns repeats within the window into one series update with the final count', async () => {
    const f = fakeEvents();
    let now = 1_000_000;
    const r = new EventRecorder({
      clients: f.clients,
      reportingController: 'c',
      reportingInstance: 'i',
      seriesFlushMs: 60_000,
      now: () => now,
    });
    for (let i = 0; i < 4; i++) {
      r.warning(regarding, 'Unschedulable', 'Schedule', 'no node');
      now += 1000;
    }
    await r.flush();
    expect(f.created).toHaveLength(1);
    expect(f.patched).toHaveLength(1);
    expect(f.patched[0]?.name).toBe(f.created[0]?.metadata?.name);
    expect(f.patched[0]?.body.series.count).toBe(4);
    expect(r.stats).toMatchObject({ created: 1, seriesUpdates: 1 });
  });

  it('records different events separately', async () => {
    const f = fakeEvents();
    const r = new EventRecorder({
      clients: f.clients,
      reportingController: 'c',
      reportingInstance: 'i',
    });
    r.warning(regarding, 'NodeLost', 'Fail', 'n1 lease expired');
    r.warning({ ...regarding, name: 'db', uid: 'u2' }, 'NodeLost', 'Fail', 'n1 lease expired');
    await r.flush();
    expect(f.created).toHaveLength(2);
  });

  it('never throws into the caller when the API refuses', async () => {
    const f = fakeEvents(true);
    const r = new EventRecorder({
      clients: f.clients,
      reportingController: 'c',
      reportingInstance: 'i',
    });
    expect(() => r.warning(regarding, 'X', 'Y', 'z')).not.toThrow();
    r.warning(regarding, 'X', 'Y', 'z');
    await expect(r.flush()).resolves.toBeUndefined();
    expect(r.stats.failures).toBe(1);
    expect(f.patched).toHaveLength(0);
  });
});

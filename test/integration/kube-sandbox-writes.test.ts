// Writes to KataSandboxes on the real API server: status by server-side apply from two field
// managers, finalizers by resourceVersion-guarded JSON patch, and Events with series counting.
import { beforeAll, describe, expect, it } from '@jest/globals';
import type { EventsV1Event, KubernetesObject } from '@kubernetes/client-node';
import { buildCrd, CRD_NAME, NODE_CLEANUP_FINALIZER } from '../../src/crds/index.js';
import { EventRecorder } from '../../src/kube/events.js';
import {
  addFinalizer,
  addFinalizerPatch,
  isStaleWrite,
  patchFinalizers,
  removeFinalizer,
} from '../../src/kube/finalizers.js';
import { Informer } from '../../src/kube/informer.js';
import { makeClients, statusCode, type KubeClients } from '../../src/kube/kube-client.js';
import { requestJson } from '../../src/kube/kube-request.js';
import { applyStatus, KATA_SANDBOX_RESOURCE as R } from '../../src/kube/status-patch.js';
import { adminKubeConfig, freshNamespace } from './cluster.js';

interface Sandbox extends KubernetesObject {
  status?: Record<string, unknown> & {
    conditions?: Array<{ type: string; status: string; reason: string }>;
  };
}

let clients: KubeClients;
let ns: string;

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && ok(v)) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}

const crParams = (name: string) => ({
  group: R.group,
  version: R.version,
  plural: R.plural,
  namespace: ns,
  name,
});
const read = (name: string) =>
  clients.custom.getNamespacedCustomObject(crParams(name)) as Promise<Sandbox>;

async function createSandbox(name: string): Promise<Sandbox> {
  return (await clients.custom.createNamespacedCustomObject({
    group: R.group,
    version: R.version,
    plural: R.plural,
    namespace: ns,
    body: {
      apiVersion: `${R.group}/${R.version}`,
      kind: R.kind,
      metadata: { name },
      spec: { containers: [{ name: 'main', image: 'busybox:1.36' }] },
    },
  })) as Sandbox;
}

const condition = (type: string, status: string, reason: string) => ({
  type,
  status,
  reason,
  message: `${type} ${status}`,
  lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
});

beforeAll(async () => {
  const kc = await adminKubeConfig();
  clients = makeClients(kc);
  // The wire-format CRD goes out as raw JSON (the typed client would rename enum → _enum).
  await requestJson(kc, `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${CRD_NAME}`, {
    method: 'PATCH',
    query: { fieldManager: 'kube-sandbox-writes-test', force: true },
    contentType: 'application/apply-patch+yaml',
    body: buildCrd(),
  });
  ns = await freshNamespace('kube-writes');
  await eventually(
    () =>
      clients.custom.listNamespacedCustomObject({
        group: R.group,
        version: R.version,
        plural: R.plural,
        namespace: ns,
      }),
    () => true,
  );
});

describe('status by server-side apply', () => {
  it('keeps both managers\u2019 fields across repeated writes by either', async () => {
    await createSandbox('ssa');
    await applyStatus(
      clients,
      'kata-controller',
      { namespace: ns, name: 'ssa' },
      {
        nodeName: 'n1',
        observedGeneration: 1,
        conditions: [condition('Scheduled', 'True', 'Scheduled')],
      },
    );
    await applyStatus(
      clients,
      'kata-node-agent',
      { namespace: ns, name: 'ssa' },
      {
        conditions: [condition('VMReady', 'True', 'Booted')],
        vm: { pid: 1234, accelerator: 'tcg', bootMillis: 5200 },
      },
    );
    // The controller writes again (phase now), sending only its own fields.
    await applyStatus(
      clients,
      'kata-controller',
      { namespace: ns, name: 'ssa' },
      {
        nodeName: 'n1',
        observedGeneration: 1,
        phase: 'Creating',
        conditions: [condition('Scheduled', 'True', 'Scheduled')],
      },
    );
    const got = await read('ssa');
    expect(got.status).toMatchObject({ nodeName: 'n1', phase: 'Creating', vm: { pid: 1234 } });
    expect(got.status?.conditions?.map((c) => c.type).sort()).toEqual(['Scheduled', 'VMReady']);
    const managers = (got.metadata?.managedFields ?? [])
      .filter((f) => f.subresource === 'status')
      .map((f) => f.manager);
    expect(managers.sort()).toEqual(['kata-controller', 'kata-node-agent']);

    // A field the controller stops sending is dropped; the node agent's stay.
    await applyStatus(
      clients,
      'kata-controller',
      { namespace: ns, name: 'ssa' },
      {
        nodeName: 'n1',
        conditions: [condition('Scheduled', 'True', 'Scheduled')],
      },
    );
    const after = await read('ssa');
    expect(after.status?.phase).toBeUndefined();
    expect(after.status).toMatchObject({ vm: { pid: 1234 } });
    expect(after.status?.conditions?.map((c) => c.type).sort()).toEqual(['Scheduled', 'VMReady']);
  });

  it('refuses an invalid status with a readable message', async () => {
    await createSandbox('bad-status');
    const err = await applyStatus(
      clients,
      'kata-controller',
      { namespace: ns, name: 'bad-status' },
      { phase: 'Dancing' },
    ).catch((e: unknown) => e as Error);
    expect(statusCode(err)).toBe(422);
    expect((err as Error).message).toContain('phase');
  });
});

describe('finalizers by guarded JSON patch', () => {
  it('adds once, refuses a stale resourceVersion, retries from a stale cache, removes', async () => {
    const created = await createSandbox('fin');
    expect(
      await addFinalizer(clients, { namespace: ns, name: 'fin' }, NODE_CLEANUP_FINALIZER),
    ).toBe('changed');
    expect(
      await addFinalizer(clients, { namespace: ns, name: 'fin' }, NODE_CLEANUP_FINALIZER),
    ).toBe('unchanged');
    expect((await read('fin')).metadata?.finalizers).toEqual([NODE_CLEANUP_FINALIZER]);

    // A patch built from the stale first read: the resourceVersion test fails.
    const ops = addFinalizerPatch(
      { ...created, metadata: { ...created.metadata, finalizers: ['x.io/other'] } },
      'y.io/late',
    );
    const err = await patchFinalizers(clients, { namespace: ns, name: 'fin' }, ops ?? []).catch(
      (e: unknown) => e,
    );
    expect(isStaleWrite(err)).toBe(true);
    expect([409, 422]).toContain(statusCode(err));

    // With a stale cached copy the helper re-reads and succeeds.
    expect(
      await addFinalizer(clients, { namespace: ns, name: 'fin' }, 'y.io/late', {
        current: created,
      }),
    ).toBe('changed');
    expect((await read('fin')).metadata?.finalizers).toEqual([NODE_CLEANUP_FINALIZER, 'y.io/late']);

    await clients.custom.deleteNamespacedCustomObject(crParams('fin'));
    const deleting = await read('fin');
    expect(deleting.metadata?.deletionTimestamp).toBeDefined();
    // None is added once deletion has begun.
    expect(await addFinalizer(clients, { namespace: ns, name: 'fin' }, 'z.io/new')).toBe(
      'unchanged',
    );
    expect(
      await removeFinalizer(clients, { namespace: ns, name: 'fin' }, NODE_CLEANUP_FINALIZER),
    ).toBe('changed');
    expect(await removeFinalizer(clients, { namespace: ns, name: 'fin' }, 'y.io/late')).toBe(
      'changed',
    );
    await eventually(
      () =>
        read('fin')
          .then(() => false)
          .catch((e: unknown) => statusCode(e) === 404),
      (gone) => gone,
    );
    expect(await removeFinalizer(clients, { namespace: ns, name: 'fin' }, 'y.io/late')).toBe(
      'not-found',
    );
  });
});

describe('EventRecorder', () => {
  it('writes an Event about a sandbox and counts repeats as a series', async () => {
    const sb = await createSandbox('ev');
    const rec = new EventRecorder({
      clients,
      reportingController: 'kata.sandbox.io/controller',
      reportingInstance: 'test-1',
      seriesFlushMs: 100,
    });
    const regarding = {
      apiVersion: sb.apiVersion,
      kind: sb.kind,
      namespace: ns,
      name: 'ev',
      uid: sb.metadata?.uid,
    };
    for (let i = 0; i < 3; i++)
      rec.warning(regarding, 'Unschedulable', 'Schedule', 'no node has a fresh Lease');
    rec.normal(regarding, 'Scheduled', 'Schedule', 'assigned to n1');
    await rec.flush();
    expect(rec.stats).toMatchObject({ created: 2, seriesUpdates: 1, failures: 0 });
    const list = await clients.events.listNamespacedEvent({ namespace: ns });
    const byReason = new Map(list.items.map((e: EventsV1Event) => [e.reason, e]));
    expect(byReason.get('Unschedulable')).toMatchObject({
      type: 'Warning',
      action: 'Schedule',
      reportingController: 'kata.sandbox.io/controller',
      reportingInstance: 'test-1',
      series: { count: 3 },
      regarding: { kind: 'KataSandbox', name: 'ev', uid: sb.metadata?.uid },
    });
    expect(byReason.get('Scheduled')?.series).toBeUndefined();
  });

  it('does not throw when the API refuses (an invalid Event)', async () => {
    const rec = new EventRecorder({ clients, reportingController: 'c', reportingInstance: 'i' });
    rec.warning({ kind: 'KataSandbox', namespace: ns, name: 'Not_A_Valid_Name!' }, 'X', 'Y', 'z');
    await rec.flush();
    expect(rec.stats.failures).toBe(1);
  });
});

describe('Informer on KataSandboxes', () => {
  it('sees sandboxes of one node only, by label', async () => {
    const inf = new Informer<Sandbox>(clients.kc, {
      path: `/apis/${R.group}/${R.version}/${R.plural}`,
      labelSelector: `kata.sandbox.io/node=n-${ns}`,
    });
    inf.start();
    try {
      await inf.waitForSync(30_000);
      await createSandbox('unlabelled');
      const sb = await createSandbox('mine');
      await clients.custom.patchNamespacedCustomObject({
        ...crParams('mine'),
        body: [
          { op: 'add', path: '/metadata/labels', value: { 'kata.sandbox.io/node': `n-${ns}` } },
        ],
      });
      await eventually(
        async () => inf.get(ns, 'mine'),
        (v) => v !== undefined,
      );
      expect(inf.get(ns, 'mine')?.metadata?.uid).toBe(sb.metadata?.uid);
      expect(inf.get(ns, 'unlabelled')).toBeUndefined();
    } finally {
      await inf.stop();
    }
  });
});

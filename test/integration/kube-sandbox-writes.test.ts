// Writes on the real API server: status by server-side apply from two field managers, finalizers
// by resourceVersion-guarded JSON patch, Events with series counting, a label-selected informer.
// Status and finalizers are exercised on a test-only CRD shaped like KataSandbox's status: the
// plane is shared, and a running kata-controller would act on KataSandboxes under our feet.
import { beforeAll, describe, expect, it } from '@jest/globals';
import type { EventsV1Event, KubernetesObject } from '@kubernetes/client-node';
import { buildCrd } from '../../src/crds/index.js';
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
import {
  applyStatus,
  KATA_SANDBOX_RESOURCE as R,
  type CustomResource,
} from '../../src/kube/status-patch.js';
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

/** The test-only kind: free-form spec, a status like KataSandbox's (phase enum, conditions map list). */
const P: CustomResource = {
  group: 'kubetest.kata.sandbox.io',
  version: 'v1',
  plural: 'probes',
  kind: 'Probe',
};
const probeCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${P.plural}.${P.group}` },
  spec: {
    group: P.group,
    scope: 'Namespaced',
    names: { plural: P.plural, singular: 'probe', kind: P.kind, listKind: 'ProbeList' },
    versions: [
      {
        name: P.version,
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
              status: {
                type: 'object',
                properties: {
                  phase: { type: 'string', enum: ['Pending', 'Scheduled', 'Creating', 'Running'] },
                  nodeName: { type: 'string' },
                  observedGeneration: { type: 'integer' },
                  vm: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
                  conditions: {
                    type: 'array',
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['type'],
                    items: {
                      type: 'object',
                      required: ['type', 'status'],
                      properties: {
                        type: { type: 'string' },
                        status: { type: 'string' },
                        reason: { type: 'string' },
                        message: { type: 'string' },
                        lastTransitionTime: { type: 'string', format: 'date-time' },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
};

const probeParams = (name: string) => ({
  group: P.group,
  version: P.version,
  plural: P.plural,
  namespace: ns,
  name,
});
const readProbe = (name: string) =>
  clients.custom.getNamespacedCustomObject(probeParams(name)) as Promise<Sandbox>;
const probeTarget = (name: string) => ({ namespace: ns, name, resource: P });

async function createProbe(name: string): Promise<Sandbox> {
  return (await clients.custom.createNamespacedCustomObject({
    group: P.group,
    version: P.version,
    plural: P.plural,
    namespace: ns,
    body: { apiVersion: `${P.group}/${P.version}`, kind: P.kind, metadata: { name }, spec: {} },
  })) as Sandbox;
}

const crParams = (name: string) => ({
  group: R.group,
  version: R.version,
  plural: R.plural,
  namespace: ns,
  name,
});

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
  // Wire-format CRDs go out as raw JSON (the typed client would rename enum → _enum).
  for (const crd of [buildCrd(), probeCrd]) {
    await requestJson(
      kc,
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`,
      {
        method: 'PATCH',
        query: { fieldManager: 'kube-sandbox-writes-test', force: true },
        contentType: 'application/apply-patch+yaml',
        body: crd,
      },
    );
  }
  ns = await freshNamespace('kube-writes');
  for (const r of [R, P]) {
    await eventually(
      () =>
        clients.custom.listNamespacedCustomObject({
          group: r.group,
          version: r.version,
          plural: r.plural,
          namespace: ns,
        }),
      () => true,
    );
  }
});

describe('status by server-side apply', () => {
  const ref = (name: string) => ({ namespace: ns, name });
  const opts = { resource: P };

  it('keeps both managers\u2019 fields across repeated writes by either', async () => {
    await createProbe('ssa');
    const scheduled = [condition('Scheduled', 'True', 'Scheduled')];
    await applyStatus(
      clients,
      'kata-controller',
      ref('ssa'),
      { nodeName: 'n1', observedGeneration: 1, conditions: scheduled },
      opts,
    );
    await applyStatus(
      clients,
      'kata-node-agent',
      ref('ssa'),
      {
        conditions: [condition('VMReady', 'True', 'Booted')],
        vm: { pid: 1234, accelerator: 'tcg' },
      },
      opts,
    );
    // The controller writes again (phase now), sending only its own fields.
    await applyStatus(
      clients,
      'kata-controller',
      ref('ssa'),
      { nodeName: 'n1', observedGeneration: 1, phase: 'Creating', conditions: scheduled },
      opts,
    );
    const got = await readProbe('ssa');
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
      ref('ssa'),
      { nodeName: 'n1', conditions: scheduled },
      opts,
    );
    const after = await readProbe('ssa');
    expect(after.status?.phase).toBeUndefined();
    expect(after.status).toMatchObject({ nodeName: 'n1', vm: { pid: 1234 } });
    expect(after.status?.conditions?.map((c) => c.type).sort()).toEqual(['Scheduled', 'VMReady']);
  });

  it('refuses an invalid status with a readable message', async () => {
    await createProbe('bad-status');
    const err = await applyStatus(
      clients,
      'kata-controller',
      ref('bad-status'),
      { phase: 'Dancing' },
      opts,
    ).catch((e: unknown) => e as Error);
    expect(statusCode(err)).toBe(422);
    expect((err as Error).message).toContain('phase');
  });

  it('applies a KataSandbox status against the real CRD schema', async () => {
    await createSandbox('real');
    const out = (await applyStatus(clients, 'kube-test-manager', ref('real'), {
      conditions: [condition('VMReady', 'False', 'VMExited')],
    })) as Sandbox;
    expect(out.status?.conditions).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ type: 'VMReady', status: 'False', reason: 'VMExited' }),
      ]),
    );
  });
});

describe('finalizers by guarded JSON patch', () => {
  const F = 'kubetest.kata.sandbox.io/cleanup';

  it('adds once, refuses a stale resourceVersion, retries from a stale cache, removes', async () => {
    const created = await createProbe('fin');
    expect(await addFinalizer(clients, probeTarget('fin'), F)).toBe('changed');
    expect(await addFinalizer(clients, probeTarget('fin'), F)).toBe('unchanged');
    expect((await readProbe('fin')).metadata?.finalizers).toEqual([F]);

    // A patch built from the stale first read: the resourceVersion test fails.
    const ops = addFinalizerPatch(created, 'y.io/late');
    const err = await patchFinalizers(clients, probeTarget('fin'), ops ?? []).catch(
      (e: unknown) => e,
    );
    expect(isStaleWrite(err)).toBe(true);
    expect([409, 422]).toContain(statusCode(err));
    expect((await readProbe('fin')).metadata?.finalizers).toEqual([F]);

    // With a stale cached copy the helper re-reads and succeeds.
    expect(await addFinalizer(clients, probeTarget('fin'), 'y.io/late', { current: created })).toBe(
      'changed',
    );
    expect((await readProbe('fin')).metadata?.finalizers).toEqual([F, 'y.io/late']);

    await clients.custom.deleteNamespacedCustomObject(probeParams('fin'));
    expect((await readProbe('fin')).metadata?.deletionTimestamp).toBeDefined();
    // None is added once deletion has begun.
    expect(await addFinalizer(clients, probeTarget('fin'), 'z.io/new')).toBe('unchanged');
    expect(await removeFinalizer(clients, probeTarget('fin'), F)).toBe('changed');
    expect((await readProbe('fin')).metadata?.finalizers).toEqual(['y.io/late']);
    expect(await removeFinalizer(clients, probeTarget('fin'), 'y.io/late')).toBe('changed');
    await eventually(
      () =>
        readProbe('fin')
          .then(() => false)
          .catch((e: unknown) => statusCode(e) === 404),
      (gone) => gone,
    );
    expect(await removeFinalizer(clients, probeTarget('fin'), 'y.io/late')).toBe('not-found');
  });

  it('removes the right item when the list changed since the read (index test)', async () => {
    await createProbe('fin2');
    await addFinalizer(clients, probeTarget('fin2'), 'a.io/one');
    await addFinalizer(clients, probeTarget('fin2'), F);
    const seen = await readProbe('fin2');
    // Someone else removes a.io/one: F moves from index 1 to 0; our patch from `seen` is stale.
    await removeFinalizer(clients, probeTarget('fin2'), 'a.io/one');
    expect(await removeFinalizer(clients, probeTarget('fin2'), F, { current: seen })).toBe(
      'changed',
    );
    expect((await readProbe('fin2')).metadata?.finalizers ?? []).toEqual([]);
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

// The informer against the real kube-apiserver: add/update/delete, selectors, a cluster-wide path,
// the 410 relist path, a cut connection and a silent (frozen) one. A loopback TCP proxy in front of
// the API server lets the test cut or freeze the informer's connections without touching the server.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  type V1ConfigMap,
} from '@kubernetes/client-node';
import { Informer, type InformerOptions } from '../../src/kube/informer.js';
import { statusCode } from '../../src/kube/kube-client.js';
import { streamWatch } from '../../src/kube/kube-request.js';
import { classifyWatchEvent } from '../../src/kube/object-cache.js';
import { adminKubeConfig, freshNamespace } from './cluster.js';
import { Relay, throughRelay } from './tcp-relay.js';

async function until(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether a watch of `path` from `resourceVersion` is answered 410 Gone (as an ERROR event or a status). */
async function watchSaysGone(
  kc: KubeConfig,
  path: string,
  resourceVersion: string,
): Promise<boolean> {
  let gone = false;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new Error('quiet')), 3000);
  await streamWatch(
    kc,
    path,
    { resourceVersion, timeoutSeconds: 2 },
    (ev) => {
      gone = classifyWatchEvent(ev).kind === 'gone';
      ctl.abort(new Error('answered'));
    },
    ctl.signal,
  )
    .catch((err: unknown) => {
      if (statusCode(err) === 410) gone = true;
    })
    .finally(() => clearTimeout(timer));
  return gone;
}

let admin: KubeConfig;
let core: CoreV1Api;
let ns: string;
let relay: Relay;
let relayed: KubeConfig;
const informers: Informer<KubernetesObject>[] = [];

beforeAll(async () => {
  admin = await adminKubeConfig();
  core = admin.makeApiClient(CoreV1Api);
  ns = await freshNamespace('kube-informer');
  const server = new URL(admin.getCurrentCluster()?.server ?? '');
  relay = new Relay(server.hostname, Number(server.port || 443));
  await relay.start();
  relayed = throughRelay(admin, relay);
});

afterEach(async () => {
  await Promise.all(informers.splice(0).map((i) => i.stop()));
});

afterAll(async () => {
  await relay?.close();
});

function informer(kc: KubeConfig, extra: Partial<InformerOptions<KubernetesObject>> = {}) {
  const log: string[] = [];
  const inf = new Informer<KubernetesObject>(kc, {
    path: `/api/v1/namespaces/${ns}/configmaps`,
    backoff: { baseMs: 100, maxMs: 1000, jitter: 0.2 },
    onAdd: (o) => log.push(`add:${o.metadata?.name}`),
    onUpdate: (old, o) => {
      if (old.metadata?.resourceVersion !== o.metadata?.resourceVersion)
        log.push(`update:${o.metadata?.name}`);
    },
    onDelete: (o) => log.push(`delete:${o.metadata?.name}`),
    ...extra,
  });
  informers.push(inf);
  inf.start();
  return { inf, log };
}

const cm = (
  name: string,
  labels: Record<string, string>,
  data: Record<string, string> = {},
): V1ConfigMap => ({
  metadata: { name, labels },
  data,
});

describe('Informer on a real API server', () => {
  it('sees add, update and delete of ConfigMaps matching its label selector', async () => {
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('pre', { app: 'a' }) });
    const { inf, log } = informer(admin, { labelSelector: 'app=a' });
    await inf.waitForSync(30_000);
    expect(inf.get(ns, 'pre')).toMatchObject({ kind: 'ConfigMap', apiVersion: 'v1' });
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('one', { app: 'a' }) });
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('other', { app: 'b' }) });
    await core.patchNamespacedConfigMap({
      namespace: ns,
      name: 'one',
      body: [{ op: 'add', path: '/data', value: { k: 'v' } }],
    });
    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'one' });
    await until(() => log.includes('delete:one'), 'delete event');
    expect(log).toEqual(['add:pre', 'add:one', 'update:one', 'delete:one']);
    expect(inf.get(ns, 'other')).toBeUndefined();
    expect(inf.list().map((o) => o.metadata?.name)).toEqual(['pre']);
  });

  it('honours a field selector', async () => {
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('picked', { app: 'f' }) });
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('ignored', { app: 'f' }) });
    const { inf } = informer(admin, { fieldSelector: 'metadata.name=picked' });
    await inf.waitForSync(30_000);
    expect(inf.list().map((o) => o.metadata?.name)).toEqual(['picked']);
  });

  it('relists after the server answers 410 Gone to an expired resourceVersion', async () => {
    // Leases churn (every heartbeat and election renews one), so the API server's watch cache for
    // them moves on and an old resourceVersion is answered "too old" (410). On a quiet new plane,
    // make the churn ourselves until the server says so.
    const leasesPath = `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`;
    const coord = admin.makeApiClient(CoordinationV1Api);
    await coord.createNamespacedLease({
      namespace: ns,
      body: { metadata: { name: 'churn' }, spec: {} },
    });
    const deadline = Date.now() + 150_000;
    let n = 0;
    while (!(await watchSaysGone(admin, leasesPath, '2'))) {
      if (Date.now() > deadline)
        throw new Error('the server never answered 410 for resourceVersion 2');
      for (let i = 0; i < 20; i++, n++) {
        await coord.patchNamespacedLease({
          namespace: ns,
          name: 'churn',
          body: [{ op: 'add', path: '/spec/leaseTransitions', value: n }],
        });
      }
      await new Promise((r) => setTimeout(r, 1000));
    }

    const log: string[] = [];
    const inf = new Informer<KubernetesObject>(admin, {
      path: leasesPath,
      labelSelector: 'app=gone',
      backoff: { baseMs: 100, maxMs: 1000, jitter: 0.2 },
      onAdd: (o) => log.push(`add:${o.metadata?.name}`),
      onDelete: (o) => log.push(`delete:${o.metadata?.name}`),
    });
    informers.push(inf);
    inf.start();
    const lease = (name: string) => ({ metadata: { name, labels: { app: 'gone' } }, spec: {} });
    await coord.createNamespacedLease({ namespace: ns, body: lease('g1') });
    await until(() => inf.get(ns, 'g1') !== undefined, 'g1');
    inf.resumeFrom('2');
    await until(() => inf.stats.gone >= 1 && inf.stats.lists >= 2, 'relist after 410', 30_000);
    await coord.createNamespacedLease({ namespace: ns, body: lease('g2') });
    await coord.deleteNamespacedLease({ namespace: ns, name: 'g1' });
    await until(
      () => inf.get(ns, 'g2') !== undefined && inf.get(ns, 'g1') === undefined,
      'events after relist',
    );
    expect(log).toEqual(['add:g1', 'add:g2', 'delete:g1']);
  }, 200_000);

  it('recovers after its watch connection is cut, catching up on changes made meanwhile', async () => {
    const { inf, log } = informer(relayed, { labelSelector: 'app=cut' });
    await inf.waitForSync(30_000);
    // A change seen through the watch proves the watch stream is live on a relayed connection
    // (an open keep-alive connection of the list, or a counted watch request, does not).
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('probe', { app: 'cut' }) });
    await until(() => inf.get(ns, 'probe') !== undefined, 'watch live');
    relay.cut();
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('during', { app: 'cut' }) });
    await until(() => inf.get(ns, 'during') !== undefined, 'change made while cut');
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('after', { app: 'cut' }) });
    await until(() => inf.get(ns, 'after') !== undefined, 'change after reconnect');
    expect(inf.stats.restarts).toBeGreaterThanOrEqual(1);
    expect(log).toEqual(['add:probe', 'add:during', 'add:after']);
  });

  it('restarts a watch that went silent (half-open) once its watchdog fires', async () => {
    const { inf } = informer(relayed, { labelSelector: 'app=frozen', watchdogMs: 2000 });
    await inf.waitForSync(30_000);
    await until(() => inf.stats.watches >= 1, 'watch open');
    relay.freeze();
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: cm('unseen-while-frozen', { app: 'frozen' }),
    });
    await until(() => inf.stats.watchdogFired >= 1, 'watchdog', 30_000);
    await until(() => inf.get(ns, 'unseen-while-frozen') !== undefined, 'caught up after watchdog');
  });

  it('watches a collection cluster-wide (Leases across namespaces)', async () => {
    const other = await freshNamespace('kube-informer-b');
    const { inf } = informer(admin, {
      path: '/apis/coordination.k8s.io/v1/leases',
      labelSelector: `t=${ns}`,
    });
    await inf.waitForSync(30_000);
    const coord = admin.makeApiClient(CoordinationV1Api);
    for (const n of [ns, other]) {
      await coord.createNamespacedLease({
        namespace: n,
        body: { metadata: { name: 'l', labels: { t: ns } }, spec: {} },
      });
    }
    await until(() => inf.list().length === 2, 'both leases');
    expect(inf.get(other, 'l')?.kind).toBe('Lease');
  });
});

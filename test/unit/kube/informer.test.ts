import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { Informer, type InformerOptions } from '../../../src/kube/informer.js';
import { FakeCollection } from './fake-apiserver.js';

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let fake: FakeCollection;
let kc: KubeConfig;
let informers: Informer<KubernetesObject>[] = [];

beforeEach(async () => {
  fake = new FakeCollection();
  kc = await fake.start();
});

afterEach(async () => {
  await Promise.all(informers.map((i) => i.stop()));
  informers = [];
  await fake.close();
});

function make(extra: Partial<InformerOptions<KubernetesObject>> = {}) {
  const log: string[] = [];
  const inf = new Informer<KubernetesObject>(kc, {
    path: '/api/v1/namespaces/ns/configmaps',
    backoff: { baseMs: 5, maxMs: 20, jitter: 0 },
    onAdd: (o) => log.push(`add:${o.metadata?.name}`),
    onUpdate: (_old, o) => log.push(`update:${o.metadata?.name}`),
    onDelete: (o) => log.push(`delete:${o.metadata?.name}`),
    ...extra,
  });
  informers.push(inf);
  return { inf, log };
}

const watchRequests = () => fake.requests.filter((r) => r.watch);
const lastWatch = () => watchRequests().at(-1);

describe('Informer against a scripted server', () => {
  it('lists, then applies watch events to its cache and handlers', async () => {
    fake.put('a');
    const { inf, log } = make({ labelSelector: 'app=x', fieldSelector: 'metadata.name!=z' });
    inf.start();
    await inf.synced;
    expect(inf.list().map((o) => o.metadata?.name)).toEqual(['a']);
    expect(inf.get('ns', 'a')).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap' });
    await until(() => fake.watches.size === 1, 'watch');
    const w = lastWatch();
    expect(w?.query.get('resourceVersion')).toBe('101');
    expect(w?.query.get('allowWatchBookmarks')).toBe('true');
    expect(w?.query.get('labelSelector')).toBe('app=x');
    expect(w?.query.get('fieldSelector')).toBe('metadata.name!=z');
    fake.put('b');
    fake.put('a', { k: 'v' });
    fake.remove('b');
    await until(() => log.length === 4, 'events');
    expect(log).toEqual(['add:a', 'add:b', 'update:a', 'delete:b']);
    expect(inf.get('ns', 'a')?.metadata?.resourceVersion).toBe('103');
    expect(inf.lastResourceVersion).toBe('104');
  });

  it('resumes from the last bookmark after the connection is cut, without relisting', async () => {
    const { inf } = make();
    inf.start();
    await inf.synced;
    await until(() => fake.watches.size === 1, 'watch');
    const rv = fake.bookmark();
    await until(() => inf.lastResourceVersion === rv, 'bookmark');
    fake.cutWatches();
    await until(() => watchRequests().length === 2 && fake.watches.size === 1, 'rewatch');
    expect(lastWatch()?.query.get('resourceVersion')).toBe(rv);
    expect(inf.stats.lists).toBe(1);
    fake.put('after');
    await until(() => inf.get('ns', 'after') !== undefined, 'event after restart');
  });

  it('relists on 410 Gone and reports what changed in between', async () => {
    fake.put('stays');
    fake.put('vanishes');
    const { inf, log } = make();
    inf.start();
    await inf.synced;
    await until(() => fake.watches.size === 1, 'watch');
    // Changes the informer misses, then a watch that answers "too old".
    fake.cutWatches();
    fake.goneOnNextWatch = true;
    fake.remove('vanishes', true);
    fake.objects.set('new', { metadata: { name: 'new', namespace: 'ns', resourceVersion: '500' } });
    await until(() => inf.stats.lists === 2 && fake.watches.size === 1, 'relist');
    expect(inf.stats.gone).toBe(1);
    expect(log).toEqual(expect.arrayContaining(['delete:vanishes', 'add:new']));
    expect(
      inf
        .list()
        .map((o) => o.metadata?.name)
        .sort(),
    ).toEqual(['new', 'stays']);
  });

  it('aborts a silent watch after the watchdog period and watches again', async () => {
    const { inf } = make({ watchdogMs: 50 });
    inf.start();
    await inf.synced;
    await until(
      () => inf.stats.watchdogFired >= 1 && watchRequests().length >= 2,
      'watchdog restart',
    );
    fake.put('late');
    await until(() => inf.get('ns', 'late') !== undefined, 'event after watchdog');
  });

  it('retries a failing list with backoff until it syncs', async () => {
    fake.failLists = 3;
    fake.put('a');
    const { inf } = make();
    inf.start();
    await inf.synced;
    expect(inf.stats.restarts).toBe(3);
    expect(inf.list()).toHaveLength(1);
  });

  it('relists periodically when resync is set, reporting every object again', async () => {
    fake.put('a');
    const { inf, log } = make({ resyncMs: 50 });
    inf.start();
    await inf.synced;
    await until(() => inf.stats.lists >= 2, 'resync');
    expect(log.filter((l) => l === 'update:a').length).toBeGreaterThanOrEqual(1);
  });

  it('keeps going when a handler throws', async () => {
    const { inf } = make({
      onAdd: () => {
        throw new Error('handler bug');
      },
    });
    inf.start();
    await inf.synced;
    await until(() => fake.watches.size === 1, 'watch');
    fake.put('x');
    fake.put('y');
    await until(() => inf.list().length === 2, 'both cached');
  });

  it('rejects synced when stopped before the first list', async () => {
    fake.failLists = 1000;
    const { inf } = make();
    inf.start();
    await until(() => inf.stats.restarts >= 1, 'first failure');
    await inf.stop();
    await expect(inf.synced).rejects.toThrow('stopped before sync');
    await expect(inf.waitForSync(10)).rejects.toThrow();
  });

  it('stops promptly from an AbortSignal while a watch is open', async () => {
    const ctl = new AbortController();
    const { inf } = make();
    inf.start(ctl.signal);
    await inf.synced;
    await until(() => fake.watches.size === 1, 'watch');
    ctl.abort();
    await inf.stop();
    await until(() => fake.watches.size === 0, 'watch closed');
  });
});

// The reconcile of one sandbox against fakes of its API clients and caches: one write binds and
// adds the finalizer, and what it reads does not grow with the number of cached sandboxes.
import { describe, expect, it } from '@jest/globals';
import type { V1Lease } from '@kubernetes/client-node';
import { controllerMetrics } from '../../../src/controllers/controller-metrics.js';
import { LeaseObservations } from '../../../src/controllers/lease-observations.js';
import { NodeLoadIndex } from '../../../src/controllers/node-load-index.js';
import { SandboxReconciler } from '../../../src/controllers/sandbox-reconciler.js';
import type { KataSandbox } from '../../../src/crds/index.js';
import type { EventRecorder } from '../../../src/kube/events.js';
import type { KubeClients } from '../../../src/kube/kube-client.js';
import { capacityAnnotations, nodeLeaseName } from '../../../src/kube/lease.js';
import { createLogger } from '../../../src/observability/logger.js';

const sandbox = (name: string, node?: string): KataSandbox =>
  ({
    apiVersion: 'kata.sandbox.io/v1alpha1',
    kind: 'KataSandbox',
    metadata: {
      name,
      namespace: 'ns',
      uid: `uid-${name}`,
      generation: 1,
      resourceVersion: '7',
      labels: node ? { 'kata.sandbox.io/node': node } : {},
      ...(node ? { finalizers: ['kata.sandbox.io/node-cleanup'] } : {}),
    },
    spec: { containers: [{ name: 'c', image: 'busybox' }], vm: { memoryMiB: 512 } },
  }) as unknown as KataSandbox;

const lease = (node: string, now: Date): V1Lease => ({
  metadata: {
    name: nodeLeaseName(node),
    namespace: 'kata-system',
    annotations: capacityAnnotations({ sandboxes: 100_000, memoryMiB: 100_000_000 }),
  },
  spec: { holderIdentity: node, leaseDurationSeconds: 40, renewTime: now as never },
});

/** A controller with `n` sandboxes cached (60 % on node a, 40 % on b) and one new one. */
function setUp(n: number) {
  const now = new Date();
  const cached = new Map<string, KataSandbox>();
  const loads = new NodeLoadIndex();
  for (let i = 0; i < n; i++) {
    const sb = sandbox(`old-${i}`, i % 5 < 3 ? 'a' : 'b');
    cached.set(`ns/old-${i}`, sb);
    loads.set(`ns/old-${i}`, sb);
  }
  cached.set('ns/new', sandbox('new'));
  loads.set('ns/new', cached.get('ns/new'));
  const counts = { cacheReads: 0, loadReads: 0, patches: [] as unknown[], statuses: 0, events: 0 };
  const leases = [lease('a', now), lease('b', now)];
  const observations = new LeaseObservations();
  for (const l of leases) observations.observe(l, now.getTime());
  const countedLoads = Object.assign(Object.create(loads) as NodeLoadIndex, {
    loadOf: (node: string) => {
      counts.loadReads++;
      return loads.loadOf(node);
    },
  });
  const reconciler = new SandboxReconciler({
    clients: {
      custom: {
        patchNamespacedCustomObject: async (req: { body: unknown }) => {
          counts.patches.push(req.body);
          return {};
        },
        patchNamespacedCustomObjectStatus: async () => {
          counts.statuses++;
          return {};
        },
      },
    } as unknown as KubeClients,
    sandboxes: {
      get: (ns, name) => {
        counts.cacheReads++;
        return cached.get(`${ns}/${name}`);
      },
    },
    loads: countedLoads,
    leases: { list: () => leases },
    leaseObservations: observations,
    nodes: { list: () => [] },
    events: { record: () => counts.events++ } as unknown as EventRecorder,
    metrics: controllerMetrics(),
    log: createLogger('test', 'silent'),
    now: () => now,
  });
  return { reconciler, counts };
}

describe('SandboxReconciler', () => {
  it('binds a new sandbox and adds its finalizer in one write, then status and one Event', async () => {
    const { reconciler, counts } = setUp(10);
    await reconciler.reconcile('ns/new', new AbortController().signal);
    expect(counts.patches).toEqual([
      [
        { op: 'test', path: '/metadata/resourceVersion', value: '7' },
        { op: 'add', path: '/metadata/labels/kata.sandbox.io~1node', value: 'b' },
        { op: 'add', path: '/metadata/finalizers', value: ['kata.sandbox.io/node-cleanup'] },
      ],
    ]);
    expect(counts.statuses).toBe(1);
    expect(counts.events).toBe(1);
  });

  it('reads the same at 10,000 cached sandboxes as at 100: no scan of the cache', async () => {
    const small = setUp(100);
    const large = setUp(10_000);
    for (const { reconciler } of [small, large])
      await reconciler.reconcile('ns/new', new AbortController().signal);
    const work = ({ counts }: ReturnType<typeof setUp>) => ({
      cacheReads: counts.cacheReads,
      loadReads: counts.loadReads,
      writes: counts.patches.length + counts.statuses + counts.events,
    });
    expect(work(large)).toEqual(work(small));
    // One cache read (the sandbox itself), one load read per node, three writes.
    expect(work(large)).toEqual({ cacheReads: 1, loadReads: 2, writes: 3 });
  });
});

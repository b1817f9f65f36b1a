// The cluster controller against a real kube-apiserver: CRD admission, scheduling over node agent
// Leases (written by the test, standing in for node agents), node loss, deletion, and status
// field ownership. The controller runs as its own process with its ServiceAccount's RBAC.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  PatchStrategy,
  setHeaderOptions,
  V1MicroTime,
  Watch,
  type KubeConfig,
} from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import type { KataSandbox } from '../../src/crds/index.js';
import { invalidSandboxes, validSandbox } from '../fixtures/invalid-sandboxes.js';
import { adminKubeConfig, freshNamespace } from './cluster.js';
import {
  eventually,
  grantElectionLease,
  installControllerPrereqs,
  startController,
  type RunningController,
} from './controller-harness.js';

const G = { group: 'kata.sandbox.io', version: 'v1alpha1', plural: 'katasandboxes' };
const suffix = randomBytes(3).toString('hex');
const nodeName = (n: string): string => `${n}-${suffix}`;

let kc: KubeConfig;
let custom: CustomObjectsApi;
let coord: CoordinationV1Api;
let core: CoreV1Api;
let ns: string;
let controller: RunningController;
let scope: { namespace: string; electionId: string };

async function writeLease(
  node: string,
  opts: {
    ageSeconds?: number;
    /** renewTime as epoch ms (instead of now - ageSeconds). */
    renewAt?: number;
    durationSeconds?: number;
    sandboxes?: number;
    memoryMiB?: number;
  } = {},
): Promise<void> {
  const name = `kata-node-${node}`;
  const body = {
    metadata: {
      name,
      namespace: 'kata-system',
      annotations: {
        'kata.sandbox.io/capacity-sandboxes': String(opts.sandboxes ?? 10),
        'kata.sandbox.io/capacity-memory-mib': String(opts.memoryMiB ?? 8192),
      },
    },
    spec: {
      holderIdentity: node,
      leaseDurationSeconds: opts.durationSeconds ?? 40,
      renewTime: new V1MicroTime(opts.renewAt ?? Date.now() - (opts.ageSeconds ?? 0) * 1000),
    },
  };
  try {
    const cur = await coord.readNamespacedLease({ name, namespace: 'kata-system' });
    await coord.replaceNamespacedLease({
      name,
      namespace: 'kata-system',
      body: {
        ...body,
        metadata: { ...body.metadata, resourceVersion: cur.metadata?.resourceVersion },
      },
    });
  } catch {
    await coord.createNamespacedLease({ namespace: 'kata-system', body });
  }
}

function sandbox(name: string, spec: Partial<KataSandbox['spec']> = {}): KataSandbox {
  const sb = validSandbox(name);
  sb.metadata.namespace = ns;
  sb.spec = { ...sb.spec, ...spec };
  return sb;
}

const create = (sb: KataSandbox): Promise<unknown> =>
  custom.createNamespacedCustomObject({ ...G, namespace: ns, body: sb });
const get = async (name: string): Promise<KataSandbox> =>
  (await custom.getNamespacedCustomObject({ ...G, namespace: ns, name })) as KataSandbox;
const nodeOf = (sb: KataSandbox): string | undefined =>
  sb.metadata.labels?.['kata.sandbox.io/node'];

beforeAll(async () => {
  kc = await adminKubeConfig();
  custom = kc.makeApiClient(CustomObjectsApi);
  coord = kc.makeApiClient(CoordinationV1Api);
  core = kc.makeApiClient(CoreV1Api);
  await installControllerPrereqs();
  ns = await freshNamespace('controller');
  scope = { namespace: ns, electionId: `kata-controller-test-${suffix}` };
  await grantElectionLease(scope.electionId);
  controller = await startController(`ctrl-${suffix}`, scope);
}, 120_000);

afterAll(async () => {
  await controller?.stop();
});

describe('KataSandbox admission', () => {
  it.each(invalidSandboxes.map((c) => [c.name, c] as const))(
    'refuses %s, naming the field',
    async (_n, c) => {
      const body = { ...c.object, metadata: { ...(c.object.metadata as object), namespace: ns } };
      const err = await custom.createNamespacedCustomObject({ ...G, namespace: ns, body }).then(
        () => undefined,
        (e: { code?: number; body?: string }) => e,
      );
      expect(err?.code).toBe(422);
      const message = (JSON.parse(err?.body ?? '{}') as { message?: string }).message ?? '';
      expect(message).toContain(c.field);
      expect(message).toContain(c.message);
    },
  );

  it('accepts a valid sandbox and fills the defaults', async () => {
    await create(sandbox('defaults'));
    const sb = await get('defaults');
    expect(sb.spec).toMatchObject({
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 30,
      vm: { vcpus: 1, memoryMiB: 512, accelerator: 'auto' },
      network: { mode: 'none' },
    });
    await custom.deleteNamespacedCustomObject({ ...G, namespace: ns, name: 'defaults' });
  });

  it('accepts a container with a terminal (tty: true), without stdin as Pods do', async () => {
    const sb = sandbox('terminal');
    sb.spec.containers[0]!.tty = true;
    await create(sb);
    expect((await get('terminal')).spec.containers[0]!.tty).toBe(true);
    await custom.deleteNamespacedCustomObject({ ...G, namespace: ns, name: 'terminal' });
  });
});

describe('kata-controller', () => {
  it('stays Pending/Unschedulable while no node fits, then schedules when a Lease appears', async () => {
    const z = nodeName('z');
    await create(sandbox('waits', { nodeName: z }));
    const pending = await eventually('Unschedulable', async () => {
      const sb = await get('waits');
      return sb.status?.reason === 'Unschedulable' ? sb : undefined;
    });
    expect(pending.status?.phase).toBe('Pending');
    expect(pending.status?.message).toContain(z);
    // Nothing of it is on a node yet, so it needs no cleanup finalizer; binding adds one.
    expect(pending.metadata.finalizers ?? []).not.toContain('kata.sandbox.io/node-cleanup');
    await writeLease(z);
    const placed = await eventually('scheduled on z', async () => {
      const sb = await get('waits');
      return nodeOf(sb) === z && sb.status?.phase === 'Scheduled' ? sb : undefined;
    });
    expect(placed.status?.nodeName).toBe(z);
    expect(placed.metadata.finalizers).toContain('kata.sandbox.io/node-cleanup');
    expect(placed.status?.conditions?.find((c) => c.type === 'Scheduled')).toMatchObject({
      status: 'True',
    });
  });

  it('spreads sandboxes by load, honours nodeSelector, skips a cordoned node', async () => {
    const [a, b, c] = [nodeName('a'), nodeName('b'), nodeName('c')];
    // A selector unique to this run keeps Leases of other runs and files out of the count.
    const suite = { 'kata.sandbox.io/test-suite': suffix };
    await core.createNode({
      body: { metadata: { name: c, labels: suite }, spec: { unschedulable: true } },
    });
    await core.createNode({ body: { metadata: { name: a, labels: { ...suite, disk: 'ssd' } } } });
    await core.createNode({ body: { metadata: { name: b, labels: suite } } });
    await Promise.all([writeLease(c), writeLease(a)]);
    await writeLease(b);
    // A probe pinned to b is placed only once the controller's caches hold b's Node and Lease, and
    // so (watch events arrive in order) everything created before them.
    await create(sandbox('spread-probe', { nodeName: b, nodeSelector: suite }));
    await eventually('probe on b', async () =>
      nodeOf(await get('spread-probe')) === b ? true : undefined,
    );

    for (let i = 0; i < 4; i++) await create(sandbox(`spread-${i}`, { nodeSelector: suite }));
    const placed = await eventually('4 sandboxes scheduled', async () => {
      const nodes = await Promise.all(
        [0, 1, 2, 3].map(async (i) => nodeOf(await get(`spread-${i}`))),
      );
      return nodes.every((n) => n) ? nodes : undefined;
    });
    // c is cordoned, so a and b share all five (the probe included) within one.
    expect(placed).not.toContain(c);
    const onA = placed.filter((n) => n === a).length;
    const onB = placed.filter((n) => n === b).length + 1;
    expect(onA + onB).toBe(5);
    expect(Math.abs(onA - onB)).toBeLessThanOrEqual(1);

    await create(sandbox('ssd', { nodeSelector: { ...suite, disk: 'ssd' } }));
    const ssd = await eventually('ssd scheduled', async () => nodeOf(await get('ssd')));
    expect(ssd).toBe(a);
  });

  it('keeps the node agent’s status fields across controller writes and follows its conditions', async () => {
    const d = nodeName('d');
    await writeLease(d);
    await create(sandbox('owned', { nodeName: d }));
    await eventually('scheduled', async () =>
      (await get('owned')).status?.phase === 'Scheduled' ? true : undefined,
    );
    const now = new Date().toISOString();
    await custom.patchNamespacedCustomObjectStatus(
      {
        ...G,
        namespace: ns,
        name: 'owned',
        fieldManager: 'kata-node-agent',
        force: true,
        body: {
          apiVersion: 'kata.sandbox.io/v1alpha1',
          kind: 'KataSandbox',
          metadata: { name: 'owned', namespace: ns },
          status: {
            vm: { pid: 4242, accelerator: 'tcg', bootMillis: 5000 },
            conditions: [
              {
                type: 'VMReady',
                status: 'True',
                reason: 'Booted',
                message: '',
                lastTransitionTime: now,
              },
              {
                type: 'Ready',
                status: 'True',
                reason: 'Ready',
                message: '',
                lastTransitionTime: now,
              },
            ],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
    const running = await eventually('Running', async () => {
      const sb = await get('owned');
      return sb.status?.phase === 'Running' ? sb : undefined;
    });
    expect(running.status?.vm?.pid).toBe(4242);
    expect(running.status?.conditions?.map((c) => c.type).sort()).toEqual([
      'Ready',
      'Scheduled',
      'VMReady',
    ]);
    const managers = (running.metadata.managedFields ?? []).map((m) => m.manager);
    expect(managers).toEqual(expect.arrayContaining(['kata-controller', 'kata-node-agent']));
  });

  it('marks sandboxes of a node whose Lease expired Failed/NodeLost, and their deletion completes', async () => {
    const e = nodeName('e');
    await writeLease(e);
    await create(sandbox('lost', { nodeName: e }));
    await eventually('scheduled', async () => (nodeOf(await get('lost')) === e ? true : undefined));
    await writeLease(e, { ageSeconds: 60 });
    const failed = await eventually('NodeLost', async () => {
      const sb = await get('lost');
      return sb.status?.reason === 'NodeLost' ? sb : undefined;
    });
    expect(failed.status?.phase).toBe('Failed');
    expect(failed.status?.message).toContain(e);
    await custom.deleteNamespacedCustomObject({ ...G, namespace: ns, name: 'lost' });
    await eventually('lost deleted', async () =>
      (await get('lost').catch(() => undefined)) ? undefined : true,
    );
  });

  it('judges a Lease by when it was seen to renew: a renewTime in 2030 that never moves stops attracting sandboxes after the lease duration', async () => {
    // A Lease for a node that does not exist, written once with a renewTime years ahead and a
    // 3 s duration, and never renewed: what anyone who may write a Lease could plant.
    const ghost = nodeName('ghost');
    await writeLease(ghost, { renewAt: Date.parse('2030-01-01T00:00:00Z'), durationSeconds: 3 });
    try {
      // While first seen it may count as fresh (it may be placed there) ...
      await create(sandbox('ghost-1', { nodeName: ghost }));
      await eventually('ghost-1 scheduled', async () =>
        nodeOf(await get('ghost-1')) === ghost ? true : undefined,
      );
      // ... but never renewing, its node is lost one lease duration later, 2030 or not,
      const lost = await eventually('ghost-1 NodeLost', async () => {
        const sb = await get('ghost-1');
        return sb.status?.reason === 'NodeLost' ? sb : undefined;
      });
      expect(lost.status?.phase).toBe('Failed');
      // and nothing new is placed there: the pinned node's Lease is the expired one.
      await create(sandbox('ghost-2', { nodeName: ghost }));
      const refused = await eventually('ghost-2 Unschedulable', async () => {
        const sb = await get('ghost-2');
        return sb.status?.reason === 'Unschedulable' ? sb : undefined;
      });
      expect(refused.status?.message).toContain('1 lease expired');
      expect(nodeOf(await get('ghost-2'))).toBeUndefined();
    } finally {
      await coord.deleteNamespacedLease({ name: `kata-node-${ghost}`, namespace: 'kata-system' });
    }
  });

  it('lets a sandbox deleted while Pending go away, with or without the cleanup finalizer', async () => {
    await create(sandbox('never', { nodeName: nodeName('nowhere') }));
    // One an older controller gave the finalizer before binding: removed as "never scheduled".
    const older = sandbox('never-old', { nodeName: nodeName('nowhere') });
    older.metadata.finalizers = ['kata.sandbox.io/node-cleanup'];
    await create(older);
    for (const name of ['never', 'never-old']) {
      await eventually(`${name} Unschedulable`, async () =>
        (await get(name)).status?.reason === 'Unschedulable' ? true : undefined,
      );
      await custom.deleteNamespacedCustomObject({ ...G, namespace: ns, name });
    }
    for (const name of ['never', 'never-old']) {
      await eventually(`${name} deleted`, async () =>
        (await get(name).catch(() => undefined)) ? undefined : true,
      );
    }
  });
});

describe('kata-controller leader election', () => {
  it('runs one leader among two replicas; when it dies the other takes over, scheduling nothing twice', async () => {
    const second = await startController(`ctrl2-${suffix}`, scope);
    try {
      const holder = async (): Promise<string | undefined> =>
        (await coord.readNamespacedLease({ name: scope.electionId, namespace: 'kata-system' })).spec
          ?.holderIdentity ?? undefined;
      const first = await eventually('a leader', holder);
      expect([`ctrl-${suffix}`, `ctrl2-${suffix}`]).toContain(first);

      const f = nodeName('f');
      await writeLease(f);
      for (let i = 0; i < 3; i++) await create(sandbox(`ha-before-${i}`, { nodeName: f }));
      await eventually('scheduled before failover', async () => {
        const all = await Promise.all(
          [0, 1, 2].map(async (i) => nodeOf(await get(`ha-before-${i}`))),
        );
        return all.every((n) => n === f) ? true : undefined;
      });

      const leader = first === `ctrl-${suffix}` ? controller : second;
      await leader.stop('SIGKILL');
      const next = await eventually(
        'the other replica to lead',
        async () => {
          const h = await holder();
          return h && h !== first ? h : undefined;
        },
        60_000,
      );
      expect(next).not.toBe(first);

      await writeLease(f);
      for (let i = 0; i < 3; i++) await create(sandbox(`ha-after-${i}`, { nodeName: f }));
      await eventually(
        'scheduled after failover',
        async () => {
          const all = await Promise.all(
            [0, 1, 2].map(async (i) => nodeOf(await get(`ha-after-${i}`))),
          );
          return all.every((n) => n === f) ? true : undefined;
        },
        60_000,
      );

      // Nothing was bound twice: at most one Scheduled event per sandbox. The killed leader may
      // have died with its last Events unwritten; the survivor's are awaited (written async).
      const before = [0, 1, 2].map((i) => `ha-before-${i}`);
      const after = [0, 1, 2].map((i) => `ha-after-${i}`);
      const scheduledFor = await eventually('Scheduled events', async () => {
        const events = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
        const counts = new Map<string, number>();
        for (const e of events.items) {
          if (e.reason !== 'Scheduled') continue;
          const name = e.regarding?.name ?? '';
          counts.set(name, (counts.get(name) ?? 0) + (e.series?.count ?? 1));
        }
        return after.every((n) => counts.has(n)) ? counts : undefined;
      });
      for (const name of after) expect([name, scheduledFor.get(name)]).toEqual([name, 1]);
      for (const name of before) expect(scheduledFor.get(name) ?? 0).toBeLessThanOrEqual(1);
    } finally {
      await second.stop();
    }
  }, 180_000);
});

// The bind patch carries a `test` of resourceVersion: of two controllers that decided on the same
// version of a sandbox, only one can bind it. Here nothing else keeps them apart (no election,
// several nodes fit, sandboxes arrive in bursts), and the test watches every binding change.
describe('two controllers racing without leader election', () => {
  it('bind each sandbox exactly once, and a binding never changes', async () => {
    const raceNs = await freshNamespace('controller-race');
    const suite = { 'kata.sandbox.io/test-suite': `race-${suffix}` };
    const nodes = [0, 1, 2, 3].map((i) => nodeName(`race${i}`));
    for (const n of nodes)
      await core.createNode({ body: { metadata: { name: n, labels: suite } } });
    for (const n of nodes) await writeLease(n, { sandboxes: 100, memoryMiB: 1_000_000 });

    // Every change of the node label and of status.nodeName, per sandbox, in watch order.
    const labels = new Map<string, (string | undefined)[]>();
    const statusNodes = new Map<string, (string | undefined)[]>();
    const record = (into: Map<string, (string | undefined)[]>, name: string, v?: string): void => {
      const seen = into.get(name) ?? [];
      if (seen.length === 0 || seen[seen.length - 1] !== v) seen.push(v);
      into.set(name, seen);
    };
    const watchErrors: unknown[] = [];
    // Retried: a CRD installed moments ago answers 429 while its storage initialises.
    const list = await eventually(
      'the sandbox list',
      async () =>
        (await custom.listNamespacedCustomObject({ ...G, namespace: raceNs })) as {
          metadata: { resourceVersion: string };
        },
    );
    const watch = await new Watch(kc).watch(
      `/apis/${G.group}/${G.version}/namespaces/${raceNs}/${G.plural}`,
      { resourceVersion: list.metadata.resourceVersion },
      (phase, sb: KataSandbox) => {
        if (phase === 'DELETED' || !sb.metadata?.name) return;
        record(labels, sb.metadata.name, nodeOf(sb));
        record(statusNodes, sb.metadata.name, sb.status?.nodeName || undefined);
      },
      (err) => {
        if (err && (err as Error).name !== 'AbortError') watchErrors.push(err);
      },
    );
    const replicas = [
      await startController(`race-a-${suffix}`, { namespace: raceNs, leaderElect: false }),
      await startController(`race-b-${suffix}`, { namespace: raceNs, leaderElect: false }),
    ];
    const names: string[] = [];
    try {
      for (let round = 0; round < 5; round++) {
        const batch = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `race-${round}-${i}`);
        names.push(...batch);
        const body = (name: string): KataSandbox => {
          const sb = sandbox(name, { nodeSelector: suite });
          sb.metadata.namespace = raceNs;
          return sb;
        };
        await Promise.all(
          batch.map((name) =>
            custom.createNamespacedCustomObject({ ...G, namespace: raceNs, body: body(name) }),
          ),
        );
        await eventually(
          `round ${round} bound and its Scheduled condition written`,
          async () => {
            const all = await Promise.all(
              batch.map((name) =>
                custom.getNamespacedCustomObject({ ...G, namespace: raceNs, name }),
              ),
            );
            return (all as KataSandbox[]).every(
              (sb) => nodeOf(sb) && sb.status?.nodeName === nodeOf(sb),
            )
              ? true
              : undefined;
          },
          60_000,
        );
      }
      // What the watch saw up to the last object written by the last round (it is ordered).
      await eventually('the watch to catch up', async () =>
        names.every((n) => statusNodes.get(n)?.at(-1) !== undefined) ? true : undefined,
      );
      expect(watchErrors).toEqual([]);
      const used = new Set<string>();
      for (const name of names) {
        const l = labels.get(name) ?? [];
        // Created unbound, then bound once: never rebound, never unbound.
        expect([name, l.length, l[0]]).toEqual([name, 2, undefined]);
        const node = l[1] ?? '';
        expect(nodes).toContain(node);
        expect([name, statusNodes.get(name)]).toEqual([name, [undefined, node]]);
        used.add(node);
      }
      // The race ran over several candidates, not one node that both would pick anyway.
      expect(used.size).toBeGreaterThan(1);

      const scheduled = await eventually('a Scheduled event for every sandbox', async () => {
        const events = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({
          namespace: raceNs,
        });
        const counts = new Map<string, number>();
        for (const e of events.items) {
          if (e.reason !== 'Scheduled') continue;
          const name = e.regarding?.name ?? '';
          counts.set(name, (counts.get(name) ?? 0) + (e.series?.count ?? 1));
        }
        return names.every((n) => counts.has(n)) ? counts : undefined;
      });
      for (const name of names) expect([name, scheduled.get(name)]).toEqual([name, 1]);
    } finally {
      watch.abort();
      await Promise.all(replicas.map((r) => r.stop()));
      // No node agent will ever clean these up: their finalizers go by hand.
      for (const name of names) {
        await custom
          .patchNamespacedCustomObject(
            {
              ...G,
              namespace: raceNs,
              name,
              body: [{ op: 'remove', path: '/metadata/finalizers' }],
            },
            setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
          )
          .catch(() => undefined);
      }
      await core.deleteNamespace({ name: raceNs }).catch(() => undefined);
      for (const n of nodes) await core.deleteNode({ name: n }).catch(() => undefined);
    }
  }, 300_000);
});

// The warm pool manager against a recording fake of the host and the API (no VM, no process):
// one boot per round up to replicasPerNode, entries reported, take/keeps/miss, makeRoom, a pool
// removed, refills held, recovery of records.
import { afterAll, describe, expect, it } from '@jest/globals';
import { getEventListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { shapeOf, type KataWarmPool } from '../../../../src/crds/index.js';
import type { Informer } from '../../../../src/kube/informer.js';
import { DEFAULTS, type NodeAgentConfig } from '../../../../src/node-agent/config.js';
import type { RunningVm } from '../../../../src/node-agent/hypervisor/qemu-process.js';
import { nodeAgentMetrics } from '../../../../src/node-agent/metrics/node-agent-metrics.js';
import type { SandboxHost } from '../../../../src/node-agent/runtime/sandbox-host.js';
import { WarmPools } from '../../../../src/node-agent/warm-pool/warm-pools.js';
import { WarmVmStore } from '../../../../src/node-agent/warm-pool/warm-vm-store.js';
import { createLogger } from '../../../../src/observability/logger.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'warm-pools-unit-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const config: NodeAgentConfig = {
  ...DEFAULTS,
  nodeName: 'n1',
  help: false,
  runDir: '/run/fake-kata',
};

function pool(name: string, replicasPerNode: number, memoryMiB = 512): KataWarmPool {
  return {
    apiVersion: 'kata.sandbox.io/v1alpha1',
    kind: 'KataWarmPool',
    metadata: { name, uid: `uid-${name}` },
    spec: { vm: { memoryMiB }, replicasPerNode },
  };
}

class World {
  readonly calls: string[] = [];
  readonly applied: { pool: string; entry: Record<string, unknown> }[] = [];
  pools: KataWarmPool[] = [];
  free = { memoryMiB: 8192, slots: 16 };
  hold = false;
  synced = true;
  private pid = 100;
  readonly store = new WarmVmStore(mkdtempSync(path.join(scratch, 'state-')));

  private vm(): RunningVm {
    let running = true;
    const pid = this.pid++;
    return {
      pid,
      get running() {
        return running;
      },
      exited: new Promise(() => {}),
      info: { pid, startTime: 1, qmpSocket: `/run/fake-kata/${pid}/qmp.sock` },
      stop: async () => {
        this.calls.push(`stop ${pid}`);
        running = false;
        return 'quit';
      },
      consoleTail: async () => [],
    } as unknown as RunningVm;
  }

  readonly host = {
    guestImage: () => ({
      kernel: '/img/vmlinuz',
      kernels: { default: '/img/vmlinuz' },
      initrd: '/img/initrd',
    }),
    fileSize: async () => 40 << 20,
    makeDir: async () => {},
    addNetns: async (n: string) => void this.calls.push(`addNetns ${n.slice(0, 9)}`),
    removeNetns: async () => void this.calls.push('removeNetns'),
    accelerator: async () => ({ accelerator: 'tcg', reason: 'test' }),
    createVmCgroups: async () => [],
    removeVmCgroups: async () => {},
    teardownShare: async () => {},
    removeTree: async () => {},
    killOrphanQemu: async () => {},
    adoptVm: () => undefined,
    bootVm: async () => {
      this.calls.push('boot');
      return {
        qemu: this.vm(),
        agent: { client: {}, close: async () => {} },
        bootMillis: 5,
      };
    },
  } as unknown as SandboxHost;

  manager(resyncMs?: number): WarmPools {
    const informer = {
      list: () => this.pools,
      get: (_ns: string | undefined, name: string) =>
        this.pools.find((p) => p.metadata.name === name),
      addHandlers: () => {},
      hasSynced: () => this.synced,
    } as unknown as Informer<KataWarmPool>;
    return new WarmPools({
      deps: {
        host: this.host,
        config,
        metrics: nodeAgentMetrics({ phases: () => new Map(), runningQemu: () => 0 }),
        log: createLogger('test', 'silent'),
        store: this.store,
      },
      nodeName: 'n1',
      pools: informer,
      clients: {
        custom: {
          patchClusterCustomObjectStatus: async (req: {
            name: string;
            body: { status: { nodes: Record<string, unknown>[] } };
          }) => {
            this.applied.push({ pool: req.name, entry: req.body.status.nodes[0]! });
            return {};
          },
        },
        core: { readNode: async () => ({ metadata: { labels: { zone: 'a' } } }) },
      } as never,
      freeForWarm: () => this.free,
      claimedByPool: () => new Map([['small', 1]]),
      holdRefills: () => this.hold,
      ...(resyncMs !== undefined && { resyncMs }),
    });
  }
}

const signal = new AbortController().signal;
const lastEntry = (w: World, name: string) =>
  w.applied.filter((a) => a.pool === name).at(-1)?.entry;

describe('WarmPools', () => {
  it('boots one VM per round up to replicasPerNode and reports the node entry', async () => {
    const w = new World();
    w.pools = [pool('small', 2)];
    const m = w.manager();
    await m.reconcileOnce(signal);
    await m.reconcileOnce(signal);
    await m.reconcileOnce(signal);
    expect(w.calls.filter((c) => c === 'boot')).toHaveLength(2);
    expect((await w.store.list()).records.map((r) => r.pool)).toEqual(['small', 'small']);
    await m.reconcileOnce(signal);
    expect(lastEntry(w, 'small')).toMatchObject({
      node: 'n1',
      desired: 2,
      ready: 2,
      booting: 0,
      claimed: 1,
    });
    expect(m.vmCounts()).toEqual(
      expect.arrayContaining([
        { pool: 'small', state: 'ready', count: 2 },
        { pool: 'small', state: 'claimed', count: 1 },
      ]),
    );
  });

  it('hands out ready VMs of the shape, oldest first, then says none is ready', async () => {
    const w = new World();
    w.pools = [pool('small', 2)];
    const m = w.manager();
    for (let i = 0; i < 3; i++) await m.reconcileOnce(signal);
    const small = shapeOf({ memoryMiB: 512 });
    expect(m.keeps(small)).toBe(true);
    expect(m.keeps(shapeOf({ memoryMiB: 1024 }))).toBe(false);
    const first = m.take(small);
    const second = m.take(small);
    expect('taken' in first && first.taken.vm.pid).toBe(100);
    expect('taken' in second && second.taken.vm.pid).toBe(101);
    expect(m.take(small)).toEqual({
      miss: 'no warm VM of shape 1c512m-default-auto was ready on the node (0 booting)',
    });
    // Handed over: the record goes, the pool boots replacements.
    if ('taken' in first) await m.handedOver(first.taken.record.vmUid);
    expect((await w.store.list()).records).toHaveLength(1);
    await m.reconcileOnce(signal);
    expect(w.calls.filter((c) => c === 'boot')).toHaveLength(3);
  });

  it('refills wait while a sandbox is being created; capacity bounds the pool', async () => {
    const w = new World();
    w.pools = [pool('small', 4)];
    w.hold = true;
    const m = w.manager();
    await m.reconcileOnce(signal);
    expect(w.calls).not.toContain('boot');
    w.hold = false;
    w.free = { memoryMiB: 1100, slots: 16 };
    for (let i = 0; i < 4; i++) await m.reconcileOnce(signal);
    expect(w.calls.filter((c) => c === 'boot')).toHaveLength(2);
    expect(lastEntry(w, 'small')).toMatchObject({ desired: 2, ready: 2 });
    expect(String(lastEntry(w, 'small')?.['message'])).toContain('allows 2 of 4');
  });

  it('makes room for a cold boot by stopping ready VMs; a deleted pool loses its VMs', async () => {
    const w = new World();
    w.pools = [pool('small', 2)];
    const m = w.manager();
    for (let i = 0; i < 3; i++) await m.reconcileOnce(signal);
    // A cold sandbox took 7.5 GiB: the warm VMs (1 GiB) no longer fit beside it.
    w.free = { memoryMiB: 700, slots: 16 };
    await m.makeRoom(shapeOf({ memoryMiB: 700 }));
    expect(w.calls.filter((c) => c.startsWith('stop'))).toHaveLength(1);
    w.free = { memoryMiB: 8192, slots: 16 };
    w.pools = [];
    await m.reconcileOnce(signal);
    expect(w.calls.filter((c) => c.startsWith('stop'))).toHaveLength(2);
    expect((await w.store.list()).records).toEqual([]);
    expect(m.keeps(shapeOf({ memoryMiB: 512 }))).toBe(false);
  });

  it('stops no warm VM while the pool informer has not listed yet (its empty cache is not "no pools")', async () => {
    const w = new World();
    w.pools = [pool('small', 2)];
    const m = w.manager();
    for (let i = 0; i < 3; i++) await m.reconcileOnce(signal);
    const before = (await w.store.list()).records.map((r) => r.vmUid).sort();
    expect(before).toHaveLength(2);
    // As after a node agent restart: the informer's cache is empty until its first list.
    w.synced = false;
    w.pools = [];
    await m.reconcileOnce(signal);
    expect(w.calls.filter((c) => c.startsWith('stop'))).toEqual([]);
    w.synced = true;
    w.pools = [pool('small', 2)];
    await m.reconcileOnce(signal);
    expect(w.calls.filter((c) => c.startsWith('stop'))).toEqual([]);
    expect((await w.store.list()).records.map((r) => r.vmUid).sort()).toEqual(before);
  });

  it('its loop leaves no listener behind on the process-long signal, however often it waits', async () => {
    const w = new World();
    w.pools = [pool('small', 1)];
    const m = w.manager(1);
    let rounds = 0;
    const round = m.reconcileOnce.bind(m);
    m.reconcileOnce = (sig) => (rounds++, round(sig));
    const ctl = new AbortController();
    m.start(ctl.signal);
    for (let i = 0; i < 30; i++) {
      m.kick();
      await new Promise((r) => setTimeout(r, 3));
    }
    expect(rounds).toBeGreaterThan(10);
    expect(getEventListeners(ctl.signal, 'abort').length).toBeLessThanOrEqual(1);
    ctl.abort();
    await m.stop();
    expect(getEventListeners(ctl.signal, 'abort')).toHaveLength(0);
  });

  it('recovery forgets records a sandbox holds and destroys those it cannot adopt', async () => {
    const w = new World();
    w.pools = [pool('small', 2)];
    const m = w.manager();
    for (let i = 0; i < 3; i++) await m.reconcileOnce(signal);
    const [a, b] = (await w.store.list()).records;
    const fresh = w.manager();
    const out = await fresh.recover(new Set([a!.vmUid]));
    expect(out).toEqual({
      [a!.vmUid]: 'claimed (the sandbox holds it)',
      [b!.vmUid]: 'destroyed',
    });
    expect((await w.store.list()).records).toEqual([]);
    expect(w.calls).toContain('removeNetns');
  });
});

// The node's warm pools: keeps each matching KataWarmPool's VMs booted and idle on this node
// (level-triggered: plan, do one step, plan again), adopts them across restarts, hands one to a
// sandbox of the same shape (never back: a VM that served a sandbox dies with it), makes room for
// cold boots, and reports per pool (its status entry for this node, the Lease, metrics).
import { randomUUID } from 'node:crypto';
import type { CoreV1Api } from '@kubernetes/client-node';
import type { KataWarmPool, WarmPoolNodeStatus } from '../../crds/index.js';
import type { Informer } from '../../kube/informer.js';
import { callApi, isNotFound, type KubeClients } from '../../kube/kube-client.js';
import type { WarmVmCount } from '../metrics/warm-pool-metrics.js';
import {
  evictionsFor,
  planWarmPools,
  type FreeCapacity,
  type PlannedPool,
} from './warm-pool-plan.js';
import { applyWarmPoolEntry } from './warm-pool-status.js';
import type { WarmPoolClaims, WarmTake } from './warm-claims.js';
import { selectsNode, shapeKey, shapeOf, type WarmShape } from '../../crds/warm-shape.js';
import {
  adoptWarmVm,
  bootWarmVm,
  destroyWarmVm,
  newWarmVmRecord,
  type RunningWarmVm,
  type WarmVmDeps,
} from './warm-vm.js';
import type { WarmVmRecord } from './warm-vm-store.js';

interface WarmVm {
  record: WarmVmRecord;
  state: 'booting' | 'ready';
  running?: RunningWarmVm;
}

export interface WarmPoolsOptions {
  deps: WarmVmDeps;
  nodeName: string;
  pools: Informer<KataWarmPool>;
  clients: Pick<KubeClients, 'custom'> & { core: Pick<CoreV1Api, 'readNode'> };
  /** Capacity no sandbox of the node holds (sandboxes that have not ended). */
  freeForWarm: () => FreeCapacity;
  /** Sandboxes of the node now running on a VM of each pool (by pool name). */
  claimedByPool: () => Map<string, number>;
  /** Ready VMs per shape key changed (the Lease annotation follows). */
  onReady?: (ready: Record<string, number>) => void;
  /**
   * A sandbox of the node is being created right now: refills wait (under TCG a boot takes the
   * CPU the claimed sandbox's first steps need).
   */
  holdRefills?: () => boolean;
  /** How often the loop looks again without an event (ms). */
  resyncMs?: number;
}

const LABELS_TTL_MS = 30_000;

export class WarmPools implements WarmPoolClaims {
  private readonly vms = new Map<string, WarmVm>();
  private labels: { at: number; value: Record<string, string> } = { at: 0, value: {} };
  private readonly written = new Map<string, string>();
  private wake: (() => void) | undefined;
  private kicked = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly o: WarmPoolsOptions) {}

  private get log() {
    return this.o.deps.log;
  }

  /**
   * Start-up: every warm record a previous node agent left is adopted (same QEMU, agent answers)
   * or destroyed; a record whose VM a sandbox's state file already holds is only forgotten.
   */
  async recover(heldBySandboxes: ReadonlySet<string>): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const { records, broken } = await this.o.deps.store.list();
    for (const vmUid of broken) {
      await this.o.deps.store.remove(vmUid);
      out[vmUid] = 'unreadable record removed';
    }
    for (const rec of records) {
      if (heldBySandboxes.has(rec.vmUid)) {
        await this.o.deps.store.remove(rec.vmUid);
        out[rec.vmUid] = 'claimed (the sandbox holds it)';
        continue;
      }
      const running = await adoptWarmVm(this.o.deps, rec);
      if (running) {
        this.vms.set(rec.vmUid, { record: rec, state: 'ready', running });
        out[rec.vmUid] = 'adopted';
      } else {
        // Gone, half-booted or not answering: nothing of it may stay (idempotent).
        await destroyWarmVm(this.o.deps, rec);
        out[rec.vmUid] = 'destroyed';
      }
    }
    return out;
  }

  start(signal: AbortSignal): void {
    const resync = this.o.resyncMs ?? 2_000;
    this.o.pools.addHandlers({
      onAdd: () => this.kick(),
      onUpdate: () => this.kick(),
      onDelete: () => this.kick(),
    });
    this.loop = (async () => {
      while (!signal.aborted) {
        try {
          await this.reconcileOnce(signal);
        } catch (err) {
          if (!signal.aborted) this.log.warn({ err }, 'warm pool reconcile failed');
        }
        if (this.kicked) {
          this.kicked = false;
          continue;
        }
        // The abort listener goes with each wait: the loop's signal lives as long as the process.
        await new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(t);
            signal.removeEventListener('abort', done);
            resolve();
          };
          const t = setTimeout(done, resync);
          this.wake = done;
          signal.addEventListener('abort', done, { once: true });
        });
        this.wake = undefined;
        this.kicked = false;
      }
    })();
  }

  /** Waits for the loop to end (after its signal aborted); warm VMs keep running. */
  async stop(): Promise<void> {
    await this.loop;
    for (const vm of this.vms.values()) await vm.running?.agent.close().catch(() => {});
  }

  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  private async nodeLabels(): Promise<Record<string, string>> {
    if (Date.now() - this.labels.at < LABELS_TTL_MS) return this.labels.value;
    let value: Record<string, string> = {};
    try {
      const node = await callApi(
        `get node ${this.o.nodeName}`,
        () => this.o.clients.core.readNode({ name: this.o.nodeName }),
        { timeoutMs: 10_000 },
      );
      value = node.metadata?.labels ?? {};
    } catch (err) {
      // No Node object: only pools without a nodeSelector select this node.
      if (!isNotFound(err)) throw err;
    }
    this.labels = { at: Date.now(), value };
    return value;
  }

  private async plannedPools(): Promise<PlannedPool[]> {
    const labels = await this.nodeLabels();
    return this.o.pools
      .list()
      .filter((p) => p.metadata.name && p.metadata.uid && !p.metadata.deletionTimestamp)
      .map((p) => ({
        name: p.metadata.name ?? '',
        uid: p.metadata.uid ?? '',
        shape: shapeOf(p.spec.vm),
        replicasPerNode: p.spec.replicasPerNode ?? 1,
        selected: selectsNode(p.spec.nodeSelector, labels),
      }));
  }

  /** Free capacity once the warm VMs are counted too. */
  private free(): FreeCapacity {
    const f = this.o.freeForWarm();
    let memoryMiB = f.memoryMiB;
    let slots = f.slots;
    for (const vm of this.vms.values()) {
      memoryMiB -= vm.record.shape.memoryMiB;
      slots -= 1;
    }
    return { memoryMiB, slots };
  }

  private planned() {
    return [...this.vms.values()].map((v) => ({
      vmUid: v.record.vmUid,
      pool: v.record.pool,
      poolUid: v.record.poolUid,
      shape: v.record.shape,
      state: v.state,
      createdAt: v.record.createdAt,
    }));
  }

  async reconcileOnce(signal: AbortSignal): Promise<void> {
    // A warm VM whose QEMU ended while idle (a crash, an OOM kill) is cleaned up and replaced.
    for (const v of [...this.vms.values()]) {
      if (v.state === 'ready' && v.running && !v.running.vm.running) {
        await this.destroy(v.record.vmUid, 'its QEMU exited while idle');
      }
    }
    // Until the pool informer has listed once, "no pools" means "not known yet": planning on it
    // would stop every adopted warm VM right after a restart.
    if (!this.o.pools.hasSynced()) return;
    const pools = await this.plannedPools();
    this.selected = new Set(
      pools.filter((p) => p.selected && p.replicasPerNode > 0).map((p) => shapeKey(p.shape)),
    );
    const plan = planWarmPools(pools, this.planned(), this.free());
    for (const vmUid of plan.stop) await this.destroy(vmUid, 'its pool no longer wants it');
    await this.report(pools, plan.entries, signal);
    const next = plan.boot[0];
    const pool = next === undefined ? undefined : pools.find((p) => p.name === next);
    if (pool && !this.o.holdRefills?.()) await this.bootOne(pool, signal);
  }

  private async bootOne(pool: PlannedPool, signal: AbortSignal): Promise<void> {
    const rec = newWarmVmRecord(this.o.deps.config.runDir, pool, randomUUID(), new Date());
    const entry: WarmVm = { record: rec, state: 'booting' };
    this.vms.set(rec.vmUid, entry);
    this.publish();
    const t0 = performance.now();
    try {
      entry.running = await bootWarmVm(this.o.deps, rec, signal);
      entry.state = 'ready';
      this.o.deps.metrics.warm.refillSeconds.observe(
        { pool: pool.name },
        (performance.now() - t0) / 1000,
      );
      this.log.info(
        { pool: pool.name, vmUid: rec.vmUid, pid: entry.running.vm.pid },
        'warm VM ready',
      );
    } catch (err) {
      this.vms.delete(rec.vmUid);
      this.bootFailure.set(pool.name, (err as Error).message.slice(0, 900));
      this.log.warn({ err, pool: pool.name }, 'booting a warm VM failed');
    }
    this.publish();
  }

  private readonly bootFailure = new Map<string, string>();

  private async destroy(vmUid: string, why: string): Promise<void> {
    const vm = this.vms.get(vmUid);
    if (!vm) return;
    this.vms.delete(vmUid);
    this.log.info({ vmUid, pool: vm.record.pool, why }, 'stopping a warm VM');
    await destroyWarmVm(this.o.deps, vm.record, vm.running?.vm, vm.running?.agent);
    this.publish();
  }

  private counts(pool: string): { ready: number; booting: number } {
    let ready = 0;
    let booting = 0;
    for (const v of this.vms.values()) {
      if (v.record.pool !== pool) continue;
      if (v.state === 'ready') ready++;
      else booting++;
    }
    return { ready, booting };
  }

  private async report(
    pools: readonly PlannedPool[],
    entries: Map<string, { desired: number; message?: string }>,
    signal: AbortSignal,
  ): Promise<void> {
    const claimed = this.o.claimedByPool();
    for (const pool of pools) {
      if (!pool.selected) continue;
      const e = entries.get(pool.name);
      const failure = this.bootFailure.get(pool.name);
      const body: WarmPoolNodeStatus = {
        node: this.o.nodeName,
        desired: e?.desired ?? 0,
        ...this.counts(pool.name),
        claimed: claimed.get(pool.name) ?? 0,
        ...((e?.message ?? failure) && {
          message: e?.message ?? `last boot failed: ${failure}`,
        }),
      };
      const fingerprint = `${pool.uid}:${JSON.stringify(body)}`;
      if (this.written.get(pool.name) === fingerprint) continue;
      try {
        await applyWarmPoolEntry(
          this.o.clients,
          this.o.nodeName,
          pool.name,
          { ...body, updatedAt: new Date().toISOString() },
          signal,
        );
        this.written.set(pool.name, fingerprint);
      } catch (err) {
        // Status is a report: failing to write it never stops the pool being kept.
        if (!isNotFound(err))
          this.log.warn({ err, pool: pool.name }, 'writing the pool entry failed');
      }
    }
  }

  private publish(): void {
    const ready: Record<string, number> = {};
    for (const v of this.vms.values()) {
      if (v.state !== 'ready') continue;
      const k = shapeKey(v.record.shape);
      ready[k] = (ready[k] ?? 0) + 1;
    }
    this.o.onReady?.(ready);
  }

  /** Warm VMs by pool and state, claimed ones included (the metric). */
  vmCounts(): WarmVmCount[] {
    const out = new Map<string, WarmVmCount>();
    const add = (pool: string, state: WarmVmCount['state'], n: number): void => {
      const k = `${pool}/${state}`;
      const c = out.get(k) ?? { pool, state, count: 0 };
      c.count += n;
      out.set(k, c);
    };
    for (const v of this.vms.values()) add(v.record.pool, v.state, 1);
    for (const [pool, n] of this.o.claimedByPool()) add(pool, 'claimed', n);
    return [...out.values()];
  }

  take(shape: WarmShape): WarmTake {
    const key = shapeKey(shape);
    const mine = [...this.vms.values()].filter((v) => shapeKey(v.record.shape) === key);
    const ready = mine
      .filter((v) => v.state === 'ready' && v.running && v.record.qemu)
      .sort((a, b) => a.record.createdAt.localeCompare(b.record.createdAt));
    const pick = ready.find((v) => v.running?.vm.running);
    if (pick?.running && pick.record.qemu) {
      this.vms.delete(pick.record.vmUid);
      this.o.deps.metrics.warm.hits.inc({ pool: pick.record.pool });
      this.publish();
      this.kick();
      return {
        taken: {
          record: { ...pick.record, qemu: pick.record.qemu },
          vm: pick.running.vm,
          agent: pick.running.agent,
        },
      };
    }
    this.o.deps.metrics.warm.misses.inc({ reason: 'NoneReady' });
    return {
      miss: `no warm VM of shape ${key} was ready on the node (${mine.length} booting)`,
    };
  }

  keeps(shape: WarmShape): boolean {
    const key = shapeKey(shape);
    return (
      this.selected.has(key) || [...this.vms.values()].some((v) => shapeKey(v.record.shape) === key)
    );
  }

  /** Shape keys of the pools selecting this node, as of the last reconcile. */
  private selected = new Set<string>();

  async handedOver(vmUid: string): Promise<void> {
    await this.o.deps.store.remove(vmUid);
  }

  async makeRoom(shape: WarmShape): Promise<void> {
    // The cold sandbox is already among the node's sandboxes (freeForWarm counts it): what is
    // missing is what the warm VMs hold beyond the capacity.
    const ready = this.planned().filter((v) => v.state === 'ready');
    const out = evictionsFor({ memoryMiB: 0, slots: 0 }, this.free(), ready, shapeKey(shape));
    for (const vmUid of out) await this.destroy(vmUid, 'a sandbox booting cold needs the room');
  }
}

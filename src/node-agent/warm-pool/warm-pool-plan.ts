// What a node agent does next for its warm pools, from what it has and what the pools ask: which
// warm VMs to stop, which pool to boot for, and what each pool's entry says. Pure and
// level-triggered: the manager applies one step and plans again.
import { shapeKey, type WarmShape } from '../../crds/warm-shape.js';

export interface PlannedPool {
  name: string;
  uid: string;
  shape: WarmShape;
  replicasPerNode: number;
  /** The pool's nodeSelector admits this node. */
  selected: boolean;
}

export interface PlannedVm {
  vmUid: string;
  pool: string;
  poolUid: string;
  shape: WarmShape;
  state: 'booting' | 'ready';
  createdAt: string;
}

export interface FreeCapacity {
  /** Memory no sandbox and no warm VM holds (MiB). */
  memoryMiB: number;
  /** Sandbox slots no sandbox and no warm VM holds. */
  slots: number;
}

export interface PoolEntry {
  desired: number;
  message?: string;
}

export interface WarmPlan {
  /** Ready VMs to stop: their pool is gone, no longer selects the node, changed shape, or has too many. */
  stop: string[];
  /** Pools to boot one more VM for, in order. */
  boot: string[];
  entries: Map<string, PoolEntry>;
}

function why(vm: PlannedVm, pool: PlannedPool | undefined): boolean {
  return (
    !pool ||
    !pool.selected ||
    pool.uid !== vm.poolUid ||
    shapeKey(pool.shape) !== shapeKey(vm.shape)
  );
}

export function planWarmPools(
  pools: readonly PlannedPool[],
  vms: readonly PlannedVm[],
  free: FreeCapacity,
): WarmPlan {
  const byName = new Map(pools.map((p) => [p.name, p]));
  const stop: string[] = [];
  let mem = free.memoryMiB;
  let slots = free.slots;
  const release = (vm: PlannedVm): void => {
    stop.push(vm.vmUid);
    mem += vm.shape.memoryMiB;
    slots += 1;
  };
  const valid = new Map<string, PlannedVm[]>();
  for (const vm of vms) {
    if (why(vm, byName.get(vm.pool))) {
      // A booting VM is stopped once it is ready (its boot cannot be cut short cleanly).
      if (vm.state === 'ready') release(vm);
      continue;
    }
    valid.set(vm.pool, [...(valid.get(vm.pool) ?? []), vm]);
  }
  const boot: string[] = [];
  const entries = new Map<string, PoolEntry>();
  for (const pool of [...pools].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!pool.selected) continue;
    const mine = valid.get(pool.name) ?? [];
    // Too many (replicas lowered): the newest ready ones go first.
    const extra = [...mine]
      .filter((v) => v.state === 'ready')
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
      .slice(0, Math.max(0, mine.length - pool.replicasPerNode));
    extra.forEach(release);
    const kept = mine.length - extra.length;
    const want = Math.max(0, pool.replicasPerNode - kept);
    const perVm = pool.shape.memoryMiB;
    const fit = Math.max(0, Math.min(want, Math.floor(mem / perVm), slots));
    for (let i = 0; i < fit; i++) boot.push(pool.name);
    mem -= fit * perVm;
    slots -= fit;
    const desired = kept + fit;
    entries.set(pool.name, {
      desired,
      ...(fit < want && {
        message: `the node's free capacity allows ${desired} of ${pool.replicasPerNode} warm VMs (${perVm} MiB each; free ${Math.max(0, mem)} MiB, ${Math.max(0, slots)} sandbox slots)`,
      }),
    });
  }
  return { stop, boot, entries };
}

/**
 * Ready warm VMs to stop so a sandbox that boots cold fits the node: other shapes first, then the
 * newest; none when it already fits. Pure.
 */
export function evictionsFor(
  need: { memoryMiB: number; slots: number },
  free: FreeCapacity,
  ready: readonly PlannedVm[],
  preferKeep?: string,
): string[] {
  const out: string[] = [];
  let mem = free.memoryMiB;
  let slots = free.slots;
  const order = [...ready].sort(
    (a, b) =>
      Number(shapeKey(a.shape) === preferKeep) - Number(shapeKey(b.shape) === preferKeep) ||
      b.createdAt.localeCompare(a.createdAt),
  );
  for (const vm of order) {
    if (mem >= need.memoryMiB && slots >= need.slots) break;
    out.push(vm.vmUid);
    mem += vm.shape.memoryMiB;
    slots += 1;
  }
  return out;
}

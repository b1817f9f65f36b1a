import { describe, expect, it } from '@jest/globals';
import {
  evictionsFor,
  planWarmPools,
  type PlannedPool,
  type PlannedVm,
} from '../../../../src/node-agent/warm-pool/warm-pool-plan.js';
import { selectsNode, shapeKey, shapeOf, warmIneligibility } from '../../../../src/crds/index.js';

const small = shapeOf({ memoryMiB: 512 });
// 512 MiB: the schema's default.
const big = shapeOf({ memoryMiB: 2048, vcpus: 2 });
const pool = (over: Partial<PlannedPool> = {}): PlannedPool => ({
  name: 'p',
  uid: 'u1',
  shape: small,
  replicasPerNode: 2,
  selected: true,
  ...over,
});
let n = 0;
const vm = (over: Partial<PlannedVm> = {}): PlannedVm => ({
  vmUid: `vm${n++}`,
  pool: 'p',
  poolUid: 'u1',
  shape: small,
  state: 'ready',
  createdAt: `2026-12-04T08:00:0${n % 10}Z`,
  ...over,
});
const plenty = { memoryMiB: 8192, slots: 16 };

describe('shapes', () => {
  it('fills the schema defaults and keys a shape by every field', () => {
    expect(shapeOf(undefined)).toEqual({
      vcpus: 1,
      memoryMiB: 512,
      kernel: 'default',
      accelerator: 'auto',
    });
    expect(shapeKey(big)).toBe('2c2048m-default-auto');
    expect(shapeKey(shapeOf({ accelerator: 'tcg' }))).not.toBe(shapeKey(shapeOf({})));
  });

  it('a nodeSelector admits a node with every label; none admits all', () => {
    expect(selectsNode(undefined, {})).toBe(true);
    expect(selectsNode({ zone: 'a' }, { zone: 'a', x: 'y' })).toBe(true);
    expect(selectsNode({ zone: 'a' }, { zone: 'b' })).toBe(false);
    expect(selectsNode({ zone: 'a' }, {})).toBe(false);
  });

  it('a sandbox needing more hot-plugged devices than a warm VM has slots for boots cold', () => {
    expect(warmIneligibility(0)).toBeUndefined();
    expect(warmIneligibility(24)).toBeUndefined();
    expect(warmIneligibility(25)).toMatch(/25 block devices and NICs, more than the 24/);
  });
});

describe('planWarmPools', () => {
  it('boots up to replicasPerNode, one entry per selected pool', () => {
    const plan = planWarmPools([pool()], [vm({ state: 'booting' })], plenty);
    expect(plan.boot).toEqual(['p']);
    expect(plan.stop).toEqual([]);
    expect(plan.entries.get('p')).toEqual({ desired: 2 });
  });

  it('boots fewer when capacity is short, and says why', () => {
    const plan = planWarmPools([pool({ replicasPerNode: 4 })], [], { memoryMiB: 1100, slots: 16 });
    expect(plan.boot).toEqual(['p', 'p']);
    expect(plan.entries.get('p')?.desired).toBe(2);
    expect(plan.entries.get('p')?.message).toMatch(/allows 2 of 4/);
    const slots = planWarmPools([pool()], [], { memoryMiB: 8192, slots: 1 });
    expect(slots.boot).toEqual(['p']);
    expect(planWarmPools([pool()], [], { memoryMiB: -512, slots: 0 }).boot).toEqual([]);
  });

  it('stops VMs of a deleted, deselected, recreated or reshaped pool; a booting one waits', () => {
    const gone = vm({ pool: 'gone' });
    const recreated = vm({ poolUid: 'old' });
    const reshaped = vm({ shape: big });
    const booting = vm({ pool: 'gone', state: 'booting' });
    const plan = planWarmPools([pool()], [gone, recreated, reshaped, booting], plenty);
    expect(plan.stop.sort()).toEqual([gone.vmUid, recreated.vmUid, reshaped.vmUid].sort());
    expect(plan.boot).toEqual(['p', 'p']);
    const deselected = planWarmPools([pool({ selected: false })], [vm()], plenty);
    expect(deselected.stop).toHaveLength(1);
    expect(deselected.entries.has('p')).toBe(false);
  });

  it('stops the newest ready VMs when replicas were lowered', () => {
    const old = vm({ createdAt: '2026-12-04T08:00:00Z' });
    const newer = vm({ createdAt: '2026-12-04T09:00:00Z' });
    const plan = planWarmPools([pool({ replicasPerNode: 1 })], [old, newer], plenty);
    expect(plan.stop).toEqual([newer.vmUid]);
    expect(plan.boot).toEqual([]);
  });

  it('capacity freed by stopped VMs goes to the pools that want it', () => {
    const stale = vm({ pool: 'gone', shape: big });
    const plan = planWarmPools([pool()], [stale], { memoryMiB: 0, slots: 0 });
    expect(plan.stop).toEqual([stale.vmUid]);
    expect(plan.boot).toEqual(['p']);
  });
});

describe('evictionsFor', () => {
  it('evicts nothing when the node fits, else other shapes first, then the newest', () => {
    const a = vm({ shape: big, createdAt: '2026-12-04T08:00:00Z' });
    const b = vm({ createdAt: '2026-12-04T08:00:00Z' });
    const c = vm({ createdAt: '2026-12-04T09:00:00Z' });
    const zero = { memoryMiB: 0, slots: 0 };
    expect(evictionsFor(zero, { memoryMiB: 0, slots: 0 }, [a, b, c])).toEqual([]);
    expect(evictionsFor(zero, { memoryMiB: -100, slots: 0 }, [a, b, c], shapeKey(small))).toEqual([
      a.vmUid,
    ]);
    expect(evictionsFor(zero, { memoryMiB: 0, slots: -1 }, [b, c], shapeKey(small))).toEqual([
      c.vmUid,
    ]);
    expect(evictionsFor(zero, { memoryMiB: -5000, slots: 0 }, [b, c])).toEqual([c.vmUid, b.vmUid]);
  });
});

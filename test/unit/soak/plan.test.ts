// The soak's plans: one seed gives one run (the replay a failure needs), and every plan stays in
// the bounds the machine can hold and the shapes the API accepts.
import { describe, expect, it } from '@jest/globals';
import {
  containerCommand,
  FAULT_KINDS,
  faultSpanMs,
  planRound,
  runsOnce,
  type PlanLimits,
} from '../../soak/plan.js';
import { Prng } from '../../soak/prng.js';

const LIMITS: PlanLimits = { maxLive: 2, faults: { 'node-agent-kill': 1, 'qemu-kill': 1 } };

function plans(seed: number, rounds: number) {
  const rng = new Prng(seed);
  let kept = 0;
  return Array.from({ length: rounds }, (_, i) => {
    const p = planRound(rng, i + 1, kept, LIMITS);
    kept = p.sandboxes.filter((s) => s.deleteWhen === 'next-round').length;
    return p;
  });
}

describe('soak plans', () => {
  it('the same seed draws the same rounds; another seed others', () => {
    expect(plans(42, 50)).toEqual(plans(42, 50));
    expect(plans(43, 50)).not.toEqual(plans(42, 50));
  });

  it('a PRNG draw stays in its range, and every value of a small range comes up', () => {
    const rng = new Prng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const v = rng.int(2, 5);
      expect([2, 3, 4, 5]).toContain(v);
      seen.add(v);
    }
    expect([...seen].sort()).toEqual([2, 3, 4, 5]);
  });

  it('never more live sandboxes than the limit, counting those kept from the round before', () => {
    const rng = new Prng(9);
    let kept = 0;
    for (let r = 1; r <= 500; r++) {
      const p = planRound(rng, r, kept, LIMITS);
      expect(kept + p.sandboxes.length).toBeLessThanOrEqual(LIMITS.maxLive);
      kept = p.sandboxes.filter((s) => s.deleteWhen === 'next-round').length;
    }
  });

  it('faults only of the kinds allowed, every one of them drawn; none when none is allowed', () => {
    const kinds = new Set(plans(5, 200).map((p) => p.fault.kind));
    expect([...kinds].sort()).toEqual(['node-agent-kill', 'qemu-kill']);
    const quiet = planRound(new Prng(5), 1, 0, { maxLive: 2, faults: {} });
    expect(quiet.fault.kind).toBe('none');
  });

  it('every shape comes up: each rootfs kind and network mode', () => {
    const sbs = plans(3, 200).flatMap((p) => p.sandboxes);
    expect([...new Set(sbs.map((s) => s.network))].sort()).toEqual(['cni', 'netns', 'none']);
    const rootfs = new Set(sbs.flatMap((s) => s.containers.map((c) => c.rootfs)));
    expect([...rootfs].sort()).toEqual(['block', 'dir', 'image']);
  });

  it('every fault kind can be drawn, each state fault lasting 3–15 s', () => {
    const all = Object.fromEntries(FAULT_KINDS.filter((k) => k !== 'none').map((k) => [k, 1]));
    const rng = new Prng(11);
    const drawn = Array.from({ length: 500 }, (_, i) =>
      planRound(rng, i + 1, 0, { maxLive: 2, faults: all }),
    );
    expect(new Set(drawn.map((p) => p.fault.kind)).size).toBe(FAULT_KINDS.length - 1);
    for (const { fault, sandboxes } of drawn) {
      expect(fault.atMs).toBeLessThanOrEqual(25_000);
      // Around a creation; a CNI or registry fault with a sandbox to aim at: see the next test.
      const early =
        fault.kind === 'state-disk-full' ||
        (sandboxes.length === 0 && /^(cni-|registry)/.test(fault.kind));
      if (early) expect(fault.atMs).toBeLessThan(8000);
      expect(faultSpanMs(fault)).toBeGreaterThanOrEqual(3000);
      expect(faultSpanMs(fault)).toBeLessThanOrEqual(15_000);
    }
  });

  it('a CNI fault meets a mode-cni sandbox at its ADD or its mid-boot DEL; a registry stop, its pull', () => {
    const rng = new Prng(12);
    const faults = { 'cni-fail': 1, 'cni-hang': 1, 'registry-stop': 1 };
    const drawn = Array.from({ length: 300 }, (_, i) =>
      planRound(rng, i + 1, 0, { maxLive: 2, faults }),
    );
    const atDelete = new Set<boolean>();
    for (const { fault, sandboxes } of drawn) {
      const first = sandboxes[0];
      if (!first) continue;
      if (fault.kind === 'registry-stop') {
        expect(first.containers[0]!.rootfs).toBe('image');
        expect(fault.atMs).toBe(first.createAfterMs + 1500);
        continue;
      }
      expect(first.network).toBe('cni');
      const add = Math.max(0, first.createAfterMs - 500);
      const del = Math.max(0, first.createAfterMs + first.deleteAfterMs - 500);
      expect([add, del]).toContain(fault.atMs);
      if (first.deleteWhen === 'mid-boot' && first.deleteAfterMs > 0)
        atDelete.add(fault.atMs === del);
    }
    expect([...atDelete].sort()).toEqual([false, true]);
  });

  it('a container runs once under Never, and under OnFailure unless it fails', () => {
    expect(runsOnce('exit1', 'Never')).toBe(true);
    expect(runsOnce('exit0', 'OnFailure')).toBe(true);
    expect(runsOnce('exit1', 'OnFailure')).toBe(false);
    expect(runsOnce('run', 'Always')).toBe(false);
  });

  it("a container's command counts its runs in its own file, then does its kind", () => {
    expect(containerCommand({ name: 'c1', kind: 'exit1', rootfs: 'dir' })).toEqual([
      '/bin/sh',
      '-c',
      'echo run >> /runs/c1; sleep 1; exit 1',
    ]);
  });
});

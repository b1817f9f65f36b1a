// The soak: rounds of sandboxes of random shapes, deletes at random moments (some mid-boot) and
// one fault per round, against the real stack; after each round, once everything converged
// (bounded wait), the invariants: phase matches the host (Running ⇔ one QEMU, ended ⇔ none),
// deleted sandboxes are gone, kata-leak-audit with the live uids finds nothing, no sandbox ever
// had two QEMUs (nor a second one after its first: the VM is never restarted), and a container
// whose policy says once ran once. Every random choice is drawn before the round runs (plan.ts),
// so the seed and the logged plans replay a run.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { KataSandbox } from '../../src/crds/index.js';
import { injectFault, type FaultTarget } from './faults.js';
import { leakAudit, netnsLeftovers, qemuPidsByUid, type LeakFinding } from './host.js';
import {
  containerCommand,
  type ContainerPlan,
  planRound,
  runsOnce,
  type FaultKind,
  type PlanLimits,
  type SandboxPlan,
} from './plan.js';
import { Prng } from './prng.js';
import type { SoakStack } from './stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface SoakOptions {
  rounds: number;
  seed: number;
  limits: PlanLimits;
  /** Bound of each convergence wait. */
  convergeMs: number;
  log: (line: string) => void;
}

export interface SoakResult {
  rounds: number;
  seed: number;
  faults: Partial<Record<FaultKind, number>>;
  /** Faults that found nothing to hit (a QEMU kill with no QEMU up). */
  faults_skipped: number;
  invariant_checks: number;
  violations: number;
  leaks: number;
  longest_convergence_ms: number;
  sandboxes: number;
  deleted_mid_boot: number;
  /** Exits of a component nobody killed (started again, as its Deployment/DaemonSet would). */
  component_exits: Record<string, number>;
  /** Sandboxes whose half-booted VM a restarted node agent replaced (by design). */
  vms_replaced_before_running: number;
  violation_details: string[];
  leak_details: LeakFinding[];
}

interface Tracked {
  plan: SandboxPlan;
  round: number;
  uid?: string;
  /** A delete was accepted by the API. */
  deleted: boolean;
  qemus: Set<number>;
  /** The QEMU seen while the sandbox was Running: a VM that ran is never started again. */
  runningPid?: number;
}

const condition = (sb: KataSandbox | undefined, type: string): string | undefined =>
  sb?.status?.conditions?.find((c) => c.type === type)?.status;

/** Its VM booted and its agent answered (the containers are what may still be starting). */
const vmUp = (sb: KataSandbox | undefined): boolean =>
  condition(sb, 'VMReady') === 'True' && condition(sb, 'AgentConnected') === 'True';

/** Why a sandbox has not converged yet, or undefined when it has. */
function unsettled(t: Tracked, sb: KataSandbox | undefined, pids: number[]): string | undefined {
  if (t.deleted) {
    if (sb) {
      const fin = sb.metadata.finalizers?.join(',') ?? '';
      return `deleted but still in the API (phase ${sb.status?.phase}, finalizers [${fin}])`;
    }
    return pids.length === 0 ? undefined : `deleted but QEMU ${pids.join(',')} runs`;
  }
  if (!sb) return 'not in the API though never deleted';
  const phase = sb.status?.phase;
  // A container that exited (and is not restarted, or not yet) makes Ready False: the sandbox is
  // Creating again while its VM runs (docs/operations.md, conditions).
  const exitedSome = sb.status?.containers?.some((c) => c.state !== 'Running') ?? false;
  const between = phase === 'Creating' && vmUp(sb) && exitedSome;
  if (phase === 'Running' || between) {
    if (pids.length !== 1) return `${phase} with ${pids.length} QEMUs`;
    if (phase === 'Running') t.runningPid ??= pids[0];
    const notRunning = t.plan.containers.filter(
      (c) =>
        c.kind === 'run' &&
        sb.status?.containers?.find((s) => s.name === c.name)?.state !== 'Running',
    );
    if (notRunning.length > 0) {
      return `Running but container ${notRunning.map((c) => c.name).join(',')} not Running`;
    }
    return undefined;
  }
  if (phase === 'Succeeded' || phase === 'Failed') {
    return pids.length === 0 ? undefined : `${phase} (${sb.status?.reason}) but QEMU ${pids} runs`;
  }
  return `phase ${phase ?? '(none)'} (${sb.status?.reason ?? ''}: ${sb.status?.message ?? ''})`;
}

export async function runSoak(stack: SoakStack, opts: SoakOptions): Promise<SoakResult> {
  const rng = new Prng(opts.seed);
  const t0 = Date.now();
  const result: SoakResult = {
    rounds: 0,
    seed: opts.seed,
    faults: {},
    faults_skipped: 0,
    invariant_checks: 0,
    violations: 0,
    leaks: 0,
    longest_convergence_ms: 0,
    sandboxes: 0,
    deleted_mid_boot: 0,
    vms_replaced_before_running: 0,
    component_exits: stack.exits,
    violation_details: [],
    leak_details: [],
  };
  let round = 0;
  const log = (line: string): void =>
    opts.log(`[soak +${((Date.now() - t0) / 1000).toFixed(1)}s r${round}] ${line}`);
  const violation = (what: string): void => {
    if (result.violation_details.includes(what)) return;
    result.violation_details.push(what);
    result.violations = result.violation_details.length;
    log(`VIOLATION ${what}`);
  };
  const tracked: Tracked[] = [];
  stack.onEvent = log;

  // Two QEMUs of one sandbox, at once or one after the other, is never right.
  const sample = (): void => {
    const byUid = new Map(tracked.filter((t) => t.uid).map((t) => [t.uid!, t]));
    for (const [uid, pids] of qemuPidsByUid(byUid.keys())) {
      const t = byUid.get(uid)!;
      if (pids.length > 1)
        violation(`${t.plan.name} (${uid}) had ${pids.length} QEMUs at once: ${pids}`);
      const before = t.qemus.size;
      for (const p of pids) t.qemus.add(p);
      if (before === 1 && t.qemus.size > 1) result.vms_replaced_before_running += 1;
      // One interrupted before it ran may be replaced (docs/architecture.md, recovery); one that ran, never.
      if (t.runningPid !== undefined && pids.some((p) => p !== t.runningPid)) {
        violation(`${t.plan.name} (${uid}) ran in QEMU ${t.runningPid}, then in ${pids}`);
      }
    }
  };
  const sampler = setInterval(sample, 1000);

  /** Retries an API call while the plane is down (a fault may be restarting it). */
  const retry = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    for (let i = 0; ; i++) {
      try {
        return await fn();
      } catch (err) {
        if (i >= 60) throw new Error(`${what}: ${String(err)}`);
        await sleep(1000);
      }
    }
  };

  const create = async (sp: SandboxPlan): Promise<Tracked> => {
    const t: Tracked = { plan: sp, round, deleted: false, qemus: new Set() };
    const vol = stack.volumeDir(sp.name);
    mkdirSync(vol, { recursive: true });
    const network =
      sp.network === 'netns'
        ? { mode: 'netns', netnsPath: stack.makeNetns(sp.name) }
        : sp.network === 'cni'
          ? { mode: 'cni' }
          : undefined;
    const rootfsOf = (c: ContainerPlan): object => {
      if (c.rootfs === 'image') return { image: stack.registry.image };
      if (c.rootfs === 'block') {
        return {
          rootfs: { block: { path: stack.makeBlockRootfs(sp.name, c.name), fsType: 'ext4' } },
        };
      }
      return { rootfs: { hostPath: { path: stack.rootfs } } };
    };
    const spec = {
      ...(network ? { network } : {}),
      restartPolicy: sp.restartPolicy,
      terminationGracePeriodSeconds: sp.grace,
      volumes: [{ name: 'runs', hostPath: { path: vol } }],
      containers: sp.containers.map((c) => ({
        name: c.name,
        ...rootfsOf(c),
        command: containerCommand(c),
        volumeMounts: [{ name: 'runs', mountPath: '/runs' }],
      })),
    };
    tracked.push(t);
    result.sandboxes += 1;
    const made = await retry(`create ${sp.name}`, async () => {
      try {
        return await stack.api.create(sp.name, spec);
      } catch (err) {
        // An attempt the API took before it went down.
        if ((err as { code?: number }).code === 409) return (await stack.api.get(sp.name))!;
        throw err;
      }
    });
    t.uid = made.metadata.uid;
    log(`created ${sp.name} ${t.uid} ${JSON.stringify({ ...sp, name: undefined })}`);
    return t;
  };

  const remove = async (t: Tracked, why: string): Promise<void> => {
    const before = await retry(`get ${t.plan.name}`, () => stack.api.get(t.plan.name));
    const phase = before?.status?.phase ?? '(none)';
    const ended = phase === 'Succeeded' || phase === 'Failed';
    if (!ended && !vmUp(before)) result.deleted_mid_boot += 1;
    await retry(`delete ${t.plan.name}`, async () => {
      try {
        await stack.api.delete(t.plan.name);
      } catch (err) {
        if ((err as { code?: number }).code !== 404) throw err;
      }
    });
    t.deleted = true;
    log(`deleted ${t.plan.name} (${why}, was ${phase})`);
  };

  /** Waits until `ts` converged; their unsettled states are violations at the bound. */
  const converge = async (ts: Tracked[], what: string): Promise<number> => {
    const start = Date.now();
    const deadline = start + opts.convergeMs;
    let waiting: string[] = [];
    while (Date.now() < deadline) {
      try {
        const pids = qemuPidsByUid(ts.map((t) => t.uid!));
        waiting = [];
        for (const t of ts) {
          const why = unsettled(t, await stack.api.get(t.plan.name), pids.get(t.uid!) ?? []);
          if (why) waiting.push(`${t.plan.name}: ${why}`);
        }
        if (waiting.length === 0) {
          const took = Date.now() - start;
          result.longest_convergence_ms = Math.max(result.longest_convergence_ms, took);
          log(`${what}: converged in ${took} ms`);
          return took;
        }
      } catch (err) {
        waiting = [`the API: ${String(err)}`];
      }
      await sleep(1000);
    }
    for (const w of waiting) violation(`${what}: not converged in ${opts.convergeMs} ms: ${w}`);
    return opts.convergeMs;
  };

  /** The invariants over `ts` (converged), and the leak audit with the sandboxes alive now. */
  const check = async (ts: Tracked[], what: string): Promise<void> => {
    await converge(ts, what);
    for (const t of ts) {
      result.invariant_checks += 1; // phase ⇔ host, or gone (converge said which)
      for (const c of t.plan.containers) {
        const file = path.join(stack.volumeDir(t.plan.name), c.name);
        const runs = existsSync(file)
          ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length
          : 0;
        if (runsOnce(c.kind, t.plan.restartPolicy)) {
          result.invariant_checks += 1;
          if (runs > 1) {
            violation(
              `${t.plan.name}/${c.name} (${c.kind}, restartPolicy ${t.plan.restartPolicy}) ran ${runs} times`,
            );
          }
        }
      }
      result.invariant_checks += 1; // never two QEMUs (the sampler says otherwise)
    }
    const live = tracked.filter((t) => !t.deleted && t.uid).map((t) => t.uid!);
    const audit = await leakAudit(stack.dirs, stack.cgroupParent, live, stack.cni.agentArgs());
    result.invariant_checks += 1;
    for (const l of audit.leftovers) leak(l);
    await checkCniAttachments(what);
    log(`${what}: audit with ${live.length} live: ${audit.leftovers.length} leftovers`);
  };

  const leak = (l: LeakFinding): void => {
    const known = result.leak_details.some(
      (x) => x.kind === l.kind && x.uid === l.uid && x.where === l.where,
    );
    if (known) return;
    result.leak_details.push(l);
    result.leaks = result.leak_details.length;
    const name = tracked.find((t) => t.uid === l.uid)?.plan.name ?? '?';
    log(`LEAK ${l.kind} of ${name} (${l.uid}) at ${l.where}`);
  };

  /**
   * The CNI network's bridge ports and host-local addresses, one each per mode-cni sandbox whose
   * VM runs (an ended sandbox has released its network): more is a leak (host-wide objects the
   * audit cannot tie to a uid: a port whose namespace outlived its name), fewer a violation.
   * Sandboxes that were not part of the converged set may be ending right now, and an ended one
   * retries a release that failed (a CNI DEL) with back-off: a bounded wait of 60 s.
   */
  const checkCniAttachments = async (what: string): Promise<void> => {
    let counts = '';
    let more = false;
    for (let i = 0; i < 60; i++) {
      let expected = 0;
      for (const t of tracked.filter((x) => !x.deleted && x.plan.network === 'cni')) {
        const sb = await retry(`get ${t.plan.name}`, () => stack.api.get(t.plan.name));
        const phase = sb?.status?.phase;
        if (phase !== 'Succeeded' && phase !== 'Failed') expected += 1;
      }
      const ports = stack.cni.bridgePorts();
      const addrs = stack.cni.allocations();
      counts = `${ports.length} bridge ports [${ports}], ${addrs.length} addresses [${addrs}], ${expected} attached sandboxes`;
      if (ports.length === expected && addrs.length === expected) {
        result.invariant_checks += 1;
        return;
      }
      more = ports.length > expected || addrs.length > expected;
      await sleep(1000);
    }
    result.invariant_checks += 1;
    if (more) leak({ kind: 'cni-attachment', uid: '-', where: `${what}: ${counts}` });
    else violation(`${what}: mode-cni sandboxes without their network: ${counts}`);
  };

  const forget = (ts: Tracked[]): void => {
    for (const t of ts) {
      rmSync(stack.volumeDir(t.plan.name), { recursive: true, force: true });
      for (const c of t.plan.containers) stack.removeBlockRootfs(t.plan.name, c.name);
      if (t.plan.network === 'netns' && t.deleted) {
        result.invariant_checks += 1;
        for (const where of netnsLeftovers(stack.netnsName(t.plan.name))) {
          leak({ kind: 'netns-wiring', uid: t.uid ?? '-', where });
        }
      }
      stack.removeNetns(t.plan.name);
      tracked.splice(tracked.indexOf(t), 1);
    }
  };

  try {
    let kept: Tracked[] = [];
    for (round = 1; round <= opts.rounds; round++) {
      const plan = planRound(rng, round, kept.length, opts.limits);
      log(`plan ${JSON.stringify(plan)}`);
      const start = Date.now();
      const mine: Tracked[] = [];
      const lifecycles = plan.sandboxes.map(async (sp) => {
        await sleep(sp.createAfterMs);
        const t = await create(sp);
        mine.push(t);
        if (sp.deleteWhen === 'mid-boot') {
          await sleep(sp.deleteAfterMs);
          await remove(t, `mid-boot, ${sp.deleteAfterMs} ms after create`);
        } else if (sp.deleteWhen === 'after-settle') {
          await converge([t], `${sp.name} settles`);
          await sleep(sp.deleteAfterMs);
          await remove(t, `${sp.deleteAfterMs} ms after settling`);
        }
      });
      const fault = (async () => {
        await sleep(Math.max(0, plan.fault.atMs - (Date.now() - start)));
        const live = (): FaultTarget[] =>
          tracked
            .filter((t) => t.uid && !t.deleted)
            .map((t) => ({ uid: t.uid!, name: t.plan.name }));
        log(`fault ${plan.fault.kind} ...`);
        const out = await injectFault(stack, plan.fault, live);
        if (out.skipped) result.faults_skipped += 1;
        else result.faults[plan.fault.kind] = (result.faults[plan.fault.kind] ?? 0) + 1;
        log(`fault ${plan.fault.kind}: ${out.what}`);
      })();
      const settled = await Promise.allSettled([...lifecycles, fault]);
      for (const s of settled) {
        if (s.status === 'rejected') violation(`round ${round} step failed: ${String(s.reason)}`);
      }
      sample();
      await check([...kept, ...mine], `round ${round} after the fault`);
      const ending = [...kept, ...mine.filter((t) => t.plan.deleteWhen === 'round-end')];
      for (const t of ending) await remove(t, 'round end');
      const gone = [...kept, ...mine.filter((t) => t.deleted)];
      await check(gone, `round ${round} after the deletes`);
      forget(gone.filter((t) => t.deleted));
      kept = mine.filter((t) => !t.deleted);
      result.rounds = round;
      log(
        `round done: ${result.invariant_checks} checks, ${result.violations} violations, ${result.leaks} leaks so far`,
      );
      if (result.violations > 0) {
        log('stopping at the first round with a violation (the host is left as it is for a look)');
        break;
      }
    }
    if (result.violations === 0) {
      round = result.rounds + 1;
      for (const t of kept) await remove(t, 'the end');
      await check(kept, 'the end');
      forget(kept);
    }
  } finally {
    clearInterval(sampler);
  }
  return result;
}

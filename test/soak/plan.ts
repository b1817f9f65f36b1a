// A round's plan, drawn from the PRNG before anything runs: what runs later depends on timing,
// the plan does not, so one seed replays the same rounds. Pure.
import type { Prng } from './prng.js';

export type ContainerKind = 'run' | 'exit0' | 'exit1';
/** dir: a busybox directory over 9p; image: from the soak's loopback registry; block: an ext4 image. */
export type RootfsKind = 'dir' | 'image' | 'block';
export type NetworkKind = 'none' | 'netns' | 'cni';
export type RestartPolicy = 'Never' | 'OnFailure' | 'Always';
/** When a sandbox is deleted: during its boot, once it settled, at the end of its round, or in the next round. */
export type DeleteWhen = 'mid-boot' | 'after-settle' | 'round-end' | 'next-round';

export const FAULT_KINDS = [
  'none',
  'node-agent-kill',
  'qemu-kill',
  'controller-kill',
  'apiserver-restart',
  'etcd-restart',
  'state-disk-full',
  'guest-agent-kill',
  'cni-fail',
  'cni-hang',
  'registry-stop',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ContainerPlan {
  name: string;
  kind: ContainerKind;
  rootfs: RootfsKind;
}

export interface SandboxPlan {
  name: string;
  /**
   * none: loopback only; netns: a namespace the soak made, with a veth in it, bridged into the VM;
   * cni: the node agent makes the namespace and runs the soak's CNI config (bridge + host-local).
   */
  network: NetworkKind;
  containers: ContainerPlan[];
  restartPolicy: RestartPolicy;
  grace: number;
  /** ms after the round starts. */
  createAfterMs: number;
  deleteWhen: DeleteWhen;
  /** ms after creation (mid-boot) or after settling (after-settle). */
  deleteAfterMs: number;
}

export interface FaultPlan {
  kind: FaultKind;
  /** ms after the round starts. */
  atMs: number;
  /**
   * ms the killed process stays down; a full disk, a failing or hanging CNI plugin and a stopped
   * registry last faultSpanMs(this).
   */
  downMs: number;
  /** Which of the candidate targets (a QEMU), as a fraction of their count. */
  target: number;
}

export interface RoundPlan {
  round: number;
  sandboxes: SandboxPlan[];
  fault: FaultPlan;
}

export interface PlanLimits {
  /** Sandboxes alive at once (those kept from the previous round count). */
  maxLive: number;
  /** The fault kinds this run may inject, each with its weight. */
  faults: Partial<Record<FaultKind, number>>;
}

/** Whether a container of this kind, under this policy, must have run exactly once. */
export function runsOnce(kind: ContainerKind, policy: RestartPolicy): boolean {
  if (policy === 'Never') return true;
  if (policy === 'OnFailure') return kind !== 'exit1';
  return false;
}

const EARLY_FAULTS: ReadonlySet<FaultKind> = new Set([
  'state-disk-full',
  'cni-fail',
  'cni-hang',
  'registry-stop',
]);

/** How long a fault that is a state rather than a kill lasts: 3–15 s. */
export function faultSpanMs(f: Pick<FaultPlan, 'downMs'>): number {
  return 3000 + f.downMs * 4;
}

export function planRound(rng: Prng, round: number, kept: number, limits: PlanLimits): RoundPlan {
  const count = Math.max(0, rng.int(1, limits.maxLive) - kept);
  const sandboxes: SandboxPlan[] = [];
  for (let i = 0; i < count; i++) {
    const containers = Array.from({ length: rng.int(1, 2) }, (_, c) => ({
      name: `c${c}`,
      kind: rng.weighted<ContainerKind>({ run: 3, exit0: 1, exit1: 1 }),
      rootfs: rng.weighted<RootfsKind>({ dir: 3, image: 2, block: 1 }),
    }));
    const deleteWhen = rng.weighted<DeleteWhen>({
      'mid-boot': 2,
      'after-settle': 2,
      'round-end': 3,
      'next-round': 2,
    });
    sandboxes.push({
      name: `r${round}-s${i}`,
      network: rng.weighted<NetworkKind>({ none: 2, netns: 1, cni: 1 }),
      containers,
      restartPolicy: rng.pick<RestartPolicy>(['Never', 'OnFailure', 'Always']),
      grace: rng.int(0, 3),
      createAfterMs: rng.int(0, 3000),
      deleteWhen,
      deleteAfterMs: deleteWhen === 'mid-boot' ? rng.int(0, 15_000) : rng.int(0, 5000),
    });
  }
  const weights = limits.faults;
  const kind =
    Object.keys(weights).length > 0 ? rng.weighted(weights as Record<FaultKind, number>) : 'none';
  const atMs = rng.int(0, 25_000);
  const fault: FaultPlan = {
    kind,
    atMs: EARLY_FAULTS.has(kind) ? atMs % 8000 : atMs,
    downMs: rng.int(0, 3000),
    target: rng.next(),
  };
  aimAtFirstSandbox(fault, sandboxes[0]);
  return { round, sandboxes, fault };
}

/**
 * A CNI or registry fault at a random moment mostly meets no CNI call or pull (the first soak runs
 * showed it: an ADD takes well under a second). So, when the round has a sandbox, the first one
 * gets what the fault needs (mode cni; an image container) and the fault its moment: just
 * before the creation, for the CNI ADD; just before a mid-boot deletion, for the DEL (when
 * `target` says so); a second and a half after the creation for the registry, mid-pull (the
 * gate makes a pull last seconds). No draw: the plan stays a function of the seed.
 */
function aimAtFirstSandbox(fault: FaultPlan, sb: SandboxPlan | undefined): void {
  if (!sb) return;
  if (fault.kind === 'cni-fail' || fault.kind === 'cni-hang') {
    sb.network = 'cni';
    const atDelete = sb.deleteWhen === 'mid-boot' && fault.target >= 0.5;
    fault.atMs = Math.max(0, sb.createAfterMs + (atDelete ? sb.deleteAfterMs : 0) - 500);
  } else if (fault.kind === 'registry-stop') {
    sb.containers[0]!.rootfs = 'image';
    fault.atMs = sb.createAfterMs + 1500;
  }
}

/** The container's command: counts its runs in the volume, then runs, exits 0 or exits 1. */
export function containerCommand(c: ContainerPlan): string[] {
  const body = {
    run: "trap 'exit 0' TERM; while true; do sleep 1; done",
    exit0: 'sleep 1; exit 0',
    exit1: 'sleep 1; exit 1',
  }[c.kind];
  return ['/bin/sh', '-c', `echo run >> /runs/${c.name}; ${body}`];
}

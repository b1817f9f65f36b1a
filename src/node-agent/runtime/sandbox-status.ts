// The node agent's part of a KataSandbox's status (DESIGN §3's ownership table): its six
// conditions, vm, network and containers — a pure function of what the runtime observed, keeping
// each condition's lastTransitionTime while its status is unchanged.
import {
  CONDITION_TYPES,
  CONTAINER_PROBLEM_REASONS,
  type Condition,
  type ContainerStatus,
  type KataSandboxStatus,
  type NetworkStatus,
  type StepCondition,
  type VmStatus,
} from '../../crds/index.js';
import type { Interface, Route } from '../../generated/types.js';
import type { ContainerRunState, SandboxState } from '../state-store.js';

/** A failed step: the condition it fails and why. */
export interface StepFailure {
  condition: StepCondition;
  reason: string;
  message: string;
}

export interface RuntimeFacts {
  generation?: number;
  /** Containers of the spec, in order. */
  containerNames: readonly string[];
  containers: Readonly<Record<string, ContainerRunState>>;
  vm?: VmStatus;
  /** QEMU runs now (booted, not yet released). */
  vmRunning: boolean;
  agentConnected: boolean;
  networkReady: boolean;
  network?: NetworkStatus;
  /** The periodic check found the VM's host wiring (tap, redirects) cut. */
  networkLost?: { reason: string; message: string };
  failure?: StepFailure;
  /** Terminated=True with this reason (Succeeded, ContainerFailed, VMExited, …). */
  end?: { reason: string; message: string };
}

export type NodeAgentStatus = Pick<
  KataSandboxStatus,
  'conditions' | 'vm' | 'network' | 'containers'
>;

/** status.vm from the state file: the VM, and whether it was taken warm or why not. Pure. */
export function vmStatusOf(state: SandboxState): VmStatus | undefined {
  const q = state.qemu;
  if (!q && !state.warmMiss) return undefined;
  return {
    ...(q && {
      pid: q.info.pid,
      accelerator: q.accelerator,
      bootMillis: q.bootMillis,
      startedAt: q.startedAt,
    }),
    ...(state.warm && {
      warm: true,
      warmPool: state.warm.pool,
      claimMillis: state.warm.claimMillis,
    }),
    ...(state.warmMiss && { warmMiss: state.warmMiss }),
  };
}

type Cond = Pick<Condition, 'type' | 'status' | 'reason' | 'message'>;

function cond(type: string, ok: boolean, reason: string, message = ''): Cond {
  return { type, status: ok ? 'True' : 'False', reason, message };
}

function failed(f: RuntimeFacts, type: StepFailure['condition']): Cond | undefined {
  return f.failure?.condition === type
    ? cond(type, false, f.failure.reason, f.failure.message)
    : undefined;
}

function containerStatuses(f: RuntimeFacts): ContainerStatus[] {
  return f.containerNames.map((name) => {
    const c = f.containers[name];
    // Once the sandbox has ended nothing waits: a container that never ran says so.
    if (f.end && (!c || c.state === 'Waiting')) {
      return {
        name,
        state: 'Exited',
        reason: 'SandboxEnded',
        message: `the sandbox ended (${f.end.reason}) before this container ran`,
        restartCount: c?.restartCount ?? 0,
      };
    }
    if (!c) return { name, state: 'Waiting', reason: 'ContainerCreating', restartCount: 0 };
    return {
      name,
      state: c.state,
      restartCount: c.restartCount,
      ...(c.exitCode !== undefined && { exitCode: c.exitCode }),
      ...(c.reason && { reason: c.reason }),
      ...(c.message && { message: c.message }),
      ...(c.startedAt && { startedAt: c.startedAt }),
      ...(c.finishedAt && { finishedAt: c.finishedAt }),
    };
  });
}

/** The six conditions the node agent owns, without timestamps. Pure. */
export function nodeAgentConditions(f: RuntimeFacts): Cond[] {
  const T = CONDITION_TYPES;
  const vm =
    failed(f, 'VMReady') ??
    (f.vmRunning
      ? cond(T.VMReady, true, 'VMRunning', f.vm?.pid ? `QEMU pid ${f.vm.pid}` : '')
      : cond(T.VMReady, false, f.end ? 'VMStopped' : 'VMStarting'));
  const agent =
    failed(f, 'AgentConnected') ??
    (f.agentConnected && f.vmRunning
      ? cond(T.AgentConnected, true, 'AgentConnected')
      : cond(T.AgentConnected, false, f.end ? 'VMStopped' : 'Connecting'));
  const network =
    failed(f, 'NetworkReady') ??
    (f.networkLost && !f.end
      ? cond(T.NetworkReady, false, f.networkLost.reason, f.networkLost.message)
      : cond(T.NetworkReady, f.networkReady, f.networkReady ? 'NetworkConfigured' : 'Configuring'));
  const statuses = containerStatuses(f);
  const allRunning = statuses.length > 0 && statuses.every((c) => c.state === 'Running');
  const notRunning = statuses.filter((c) => c.state !== 'Running').map((c) => c.name);
  // A container stuck on its image or crash-looping says so on the condition (and so in the
  // phase's reason).
  const imageStuck = statuses.find((c) => c.reason && CONTAINER_PROBLEM_REASONS.has(c.reason));
  const containers =
    failed(f, 'ContainersReady') ??
    (allRunning
      ? cond(T.ContainersReady, true, 'ContainersRunning')
      : imageStuck
        ? cond(
            T.ContainersReady,
            false,
            imageStuck.reason ?? '',
            `container ${imageStuck.name}: ${imageStuck.message ?? ''}`,
          )
        : cond(
            T.ContainersReady,
            false,
            'ContainersNotReady',
            `not running: ${notRunning.join(', ')}`,
          ));
  const readyNow = [vm, agent, network, containers].every((c) => c.status === 'True') && !f.end;
  const ready = readyNow
    ? cond(T.Ready, true, 'SandboxReady')
    : cond(T.Ready, false, f.end ? 'Terminated' : 'NotReady');
  const terminated = f.end
    ? cond(T.Terminated, true, f.end.reason, f.end.message)
    : cond(T.Terminated, false, 'NotTerminated');
  return [vm, agent, network, containers, ready, terminated];
}

/** status.network from what the guest agent lists (ListInterfaces, ListRoutes). Pure. */
export function guestNetworkStatus(
  interfaces: readonly Interface[],
  routes: readonly Route[],
): NetworkStatus {
  return {
    interfaces: interfaces
      .filter((i) => i.name !== 'lo')
      .map((i) => ({
        name: i.name,
        mac: i.hwAddr,
        addresses: i.IPAddresses.map((a) => `${a.address}/${a.mask}`),
        mtu: i.mtu,
      })),
    routes: routes
      .filter((r) => r.device !== 'lo')
      .map((r) => ({ dest: r.dest || 'default', gateway: r.gateway, device: r.device })),
  };
}

/** Keeps lastTransitionTime of conditions whose status did not change. Pure. */
export function withTransitionTimes(
  next: readonly Cond[],
  previous: readonly Condition[] | undefined,
  now: Date,
  generation?: number,
): Condition[] {
  return next.map((c) => {
    const prev = previous?.find((p) => p.type === c.type);
    const lastTransitionTime =
      prev && prev.status === c.status && prev.lastTransitionTime
        ? prev.lastTransitionTime
        : now.toISOString();
    return {
      ...c,
      lastTransitionTime,
      ...(generation !== undefined && { observedGeneration: generation }),
    } as Condition;
  });
}

/** The status the node agent applies (its fields only). Pure. */
export function nodeAgentStatus(
  f: RuntimeFacts,
  previous: readonly Condition[] | undefined,
  now: Date,
): NodeAgentStatus {
  return {
    conditions: withTransitionTimes(nodeAgentConditions(f), previous, now, f.generation),
    ...(f.vm && { vm: f.vm }),
    network: f.network ?? { interfaces: [], routes: [] },
    containers: containerStatuses(f),
  };
}

/** Compares statuses ignoring timestamps that only move when a status flips. Pure. */
export function sameStatus(a: NodeAgentStatus | undefined, b: NodeAgentStatus): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

import { CONTAINER_PROBLEM_REASONS } from '../crds/index.js';

/** The standard Kubernetes condition shape, as far as phase derivation reads it. */
export interface ConditionView {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
}

export type Phase =
  'Pending' | 'Scheduled' | 'Creating' | 'Running' | 'Succeeded' | 'Failed' | 'Terminating';

export interface PhaseInputs {
  conditions: ConditionView[];
  deleting: boolean;
  /** The node the sandbox is on stopped renewing its Lease. */
  nodeLost?: { node: string; since?: Date };
  /** What status said before, so an end (Succeeded/Failed) is never undone. */
  previous?: { phase?: string; reason?: string; message?: string };
}

export interface PhaseResult {
  phase: Phase;
  reason: string;
  message: string;
}

const NODE_AGENT_CONDITIONS = [
  'VMReady',
  'AgentConnected',
  'NetworkReady',
  'ContainersReady',
  'Ready',
  'Terminated',
];

/**
 * The one place phase, reason and message come from: a pure function of the node agent's
 * conditions, the controller's own Scheduled condition, deletion and node liveness.
 */
export function derivePhase(inputs: PhaseInputs): PhaseResult {
  const cond = (type: string): ConditionView | undefined =>
    inputs.conditions.find((c) => c.type === type);
  const prev = inputs.previous;

  if (inputs.deleting) {
    return { phase: 'Terminating', reason: 'Deleting', message: 'the sandbox is being deleted' };
  }
  if (prev?.phase === 'Succeeded' || prev?.phase === 'Failed') {
    return { phase: prev.phase, reason: prev.reason ?? '', message: prev.message ?? '' };
  }

  const terminated = cond('Terminated');
  if (terminated?.status === 'True') {
    const ok = terminated.reason === 'Succeeded';
    return {
      phase: ok ? 'Succeeded' : 'Failed',
      reason: terminated.reason || (ok ? 'Succeeded' : 'Failed'),
      message: terminated.message ?? '',
    };
  }
  if (inputs.nodeLost) {
    const since = inputs.nodeLost.since ? ` since ${inputs.nodeLost.since.toISOString()}` : '';
    return {
      phase: 'Failed',
      reason: 'NodeLost',
      message: `node ${inputs.nodeLost.node} stopped renewing its node agent lease${since}`,
    };
  }
  if (cond('Ready')?.status === 'True') {
    return { phase: 'Running', reason: '', message: '' };
  }
  const scheduled = cond('Scheduled');
  if (scheduled?.status === 'True') {
    const containers = cond('ContainersReady');
    const problem =
      containers?.status === 'False' && CONTAINER_PROBLEM_REASONS.has(containers.reason ?? '')
        ? containers
        : undefined;
    const failing =
      problem ?? NODE_AGENT_CONDITIONS.map(cond).find((c) => c?.status === 'False' && c.reason);
    const started = NODE_AGENT_CONDITIONS.some((t) => cond(t) !== undefined);
    if (!started) return { phase: 'Scheduled', reason: '', message: scheduled.message ?? '' };
    return { phase: 'Creating', reason: failing?.reason ?? '', message: failing?.message ?? '' };
  }
  return {
    phase: 'Pending',
    reason: scheduled?.reason ?? '',
    message: scheduled?.message ?? '',
  };
}

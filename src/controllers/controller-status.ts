import type { Condition, KataSandbox, Phase } from '../crds/index.js';

/** The status fields the controller owns (DESIGN §3); each server-side apply sends all of them. */
export interface ControllerStatus {
  phase: Phase;
  reason: string;
  message: string;
  nodeName?: string;
  observedGeneration?: number;
  conditions: Condition[];
}

/** A condition whose lastTransitionTime moves only when its status changes. */
export function nextCondition(
  previous: Condition | undefined,
  next: Omit<Condition, 'lastTransitionTime'>,
  now: Date,
): Condition {
  const changed = !previous || previous.status !== next.status;
  return {
    ...next,
    lastTransitionTime: changed ? now.toISOString() : previous.lastTransitionTime,
  };
}

export function findCondition(sb: KataSandbox, type: string): Condition | undefined {
  return sb.status?.conditions?.find((c) => c.type === type);
}

/** True when applying `next` would change nothing the controller owns. */
export function sameControllerStatus(sb: KataSandbox, next: ControllerStatus): boolean {
  const s = sb.status ?? {};
  const sched = findCondition(sb, 'Scheduled');
  const nextSched = next.conditions.find((c) => c.type === 'Scheduled');
  return (
    s.phase === next.phase &&
    (s.reason ?? '') === next.reason &&
    (s.message ?? '') === next.message &&
    s.nodeName === next.nodeName &&
    s.observedGeneration === next.observedGeneration &&
    JSON.stringify(sched ?? null) === JSON.stringify(nextSched ?? null)
  );
}

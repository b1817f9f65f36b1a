// How the controller judges a node agent's Lease: by what it saw, not by what the Lease says.
// spec.renewTime is written by whoever may write the Lease, so a renewTime in 2030 (or a
// leaseDurationSeconds of years) would keep a node "alive" that renews nothing. Like
// kube-controller-manager's node lifecycle controller (its probe timestamps), the controller
// records the local time at which it saw each Lease's renewTime change, and takes the earlier of
// that and renewTime as the last renewal: a renewTime in the future counts as "when seen" at
// most, one in the past keeps its age. A Lease never renewed after it was first seen goes stale
// one lease duration after it was first seen; the duration honoured is capped.
import type { V1Lease } from '@kubernetes/client-node';
import { freshUntil, NODE_LEASE_DURATION_SECONDS, timeMillis } from '../kube/lease.js';

/** What the controller makes of one Lease (times in epoch ms). */
export interface LeaseJudgement {
  /** The last renewal: min(spec.renewTime, when the controller saw renewTime change). */
  renewedAt?: number;
  /** spec.leaseDurationSeconds, at most the controller's cap. */
  durationSeconds?: number;
}

interface Observation {
  renewTime: number | undefined;
  seenAt: number;
}

const keyOf = (lease: V1Lease): string =>
  `${lease.metadata?.namespace ?? ''}/${lease.metadata?.name ?? ''}`;

export class LeaseObservations {
  private readonly seen = new Map<string, Observation>();

  /** @param maxDurationSeconds the longest leaseDurationSeconds honoured. */
  constructor(readonly maxDurationSeconds: number = NODE_LEASE_DURATION_SECONDS) {}

  /** Records a Lease as seen at `now` (an informer add or update); a renewal if renewTime moved. */
  observe(lease: V1Lease, now: number): void {
    const renewTime = timeMillis(lease.spec?.renewTime as Date | string | undefined);
    const prev = this.seen.get(keyOf(lease));
    if (prev && prev.renewTime === renewTime) return;
    this.seen.set(keyOf(lease), { renewTime, seenAt: now });
  }

  forget(lease: V1Lease): void {
    this.seen.delete(keyOf(lease));
  }

  /** The judgement of `lease`; one not observed yet counts as seen at `now`. */
  judge(lease: V1Lease, now: number): LeaseJudgement {
    const renewTime = timeMillis(lease.spec?.renewTime as Date | string | undefined);
    const obs = this.seen.get(keyOf(lease));
    const seenAt = obs && obs.renewTime === renewTime ? obs.seenAt : now;
    const dur = lease.spec?.leaseDurationSeconds;
    return {
      renewedAt: renewTime === undefined ? undefined : Math.min(renewTime, seenAt),
      durationSeconds: dur === undefined ? undefined : Math.min(dur, this.maxDurationSeconds),
    };
  }

  /** Fresh while now < renewedAt + duration (DESIGN §3, on the judged values). */
  isFresh(lease: V1Lease, now: number): boolean {
    const j = this.judge(lease, now);
    const until = freshUntil(j.renewedAt, j.durationSeconds);
    return until !== undefined && now < until;
  }
}

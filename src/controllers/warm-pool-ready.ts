// A KataWarmPool's Ready condition, from the entries its node agents wrote: True when every
// reporting node has the VMs it aims for ready. Pure; lastTransitionTime is kept while the status
// does not change.
import type { Condition, KataWarmPool } from '../crds/index.js';

export function warmPoolReady(pool: KataWarmPool, now: Date): Condition {
  const entries = pool.status?.nodes ?? [];
  const replicas = pool.spec.replicasPerNode ?? 1;
  const cond = (ok: boolean, reason: string, message: string): Condition => {
    const prev = pool.status?.conditions?.find((c) => c.type === 'Ready');
    const status = ok ? 'True' : 'False';
    return {
      type: 'Ready',
      status,
      reason,
      message,
      lastTransitionTime:
        prev && prev.status === status ? prev.lastTransitionTime : now.toISOString(),
      ...(pool.metadata.generation !== undefined && {
        observedGeneration: pool.metadata.generation,
      }),
    };
  };
  if (replicas === 0) return cond(true, 'NothingToKeep', 'replicasPerNode is 0');
  if (entries.length === 0) {
    return cond(false, 'NoNodes', 'no node agent has reported for this pool (none selected?)');
  }
  const short = entries.filter((e) => (e.desired ?? 0) < replicas);
  const filling = entries.filter((e) => (e.ready ?? 0) < (e.desired ?? 0));
  if (filling.length > 0) {
    const shown = filling
      .slice(0, 5)
      .map((e) => `${e.node}: ${e.ready ?? 0}/${e.desired ?? 0} ready, ${e.booting ?? 0} booting`)
      .join('; ');
    return cond(
      false,
      'Filling',
      `${filling.length} of ${entries.length} nodes filling (${shown})`,
    );
  }
  if (short.length === entries.length) {
    return cond(
      false,
      'CapacityShort',
      `no node can keep ${replicas} VMs: ${short[0]?.message ?? 'free capacity is short'}`,
    );
  }
  const note = short.length > 0 ? `; ${short.length} keep fewer for want of capacity` : '';
  return cond(true, 'Ready', `${entries.length} nodes have their warm VMs ready${note}`);
}

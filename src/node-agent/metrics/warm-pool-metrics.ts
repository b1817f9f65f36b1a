// The warm pools' series: hits and misses of sandboxes, VMs by pool and state, refill durations.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface WarmVmCount {
  pool: string;
  state: 'booting' | 'ready' | 'claimed';
  count: number;
}

export function warmPoolMetrics(registry: Registry, vms: () => WarmVmCount[] | undefined) {
  return {
    hits: new Counter({
      name: 'kata_node_warm_pool_hits_total',
      help: 'Sandboxes that took a warm VM instead of booting, by pool.',
      labelNames: ['pool'],
      registers: [registry],
    }),
    misses: new Counter({
      name: 'kata_node_warm_pool_misses_total',
      help:
        'Sandboxes of a shape a pool of the node keeps that booted cold, by reason (NoneReady, ' +
        'TooManyDevices, NoHotplug: the machine type cannot hot-plug its drives or NICs).',
      labelNames: ['reason'],
      registers: [registry],
    }),
    vms: new Gauge({
      name: 'kata_node_warm_pool_vms',
      help: 'Warm VMs of each pool on this node by state: booting, ready, claimed (serving a sandbox).',
      labelNames: ['pool', 'state'],
      registers: [registry],
      collect() {
        const now = vms();
        if (!now) return;
        this.reset();
        for (const v of now) this.set({ pool: v.pool, state: v.state }, v.count);
      },
    }),
    refillSeconds: new Histogram({
      name: 'kata_node_warm_pool_refill_duration_seconds',
      help: 'Booting one warm VM, from its record to its agent answering.',
      labelNames: ['pool'],
      buckets: [1, 2, 5, 10, 15, 20, 30, 60, 120],
      registers: [registry],
    }),
  };
}

export type WarmPoolMetrics = ReturnType<typeof warmPoolMetrics>;

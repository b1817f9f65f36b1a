// prom-client's default process and Node.js metrics, less the three gauges it names *_total
// (nodejs_active_{handles,requests,resources}_total): promtool rejects a gauge with a counter's
// suffix, and the unsuffixed gauges (nodejs_active_handles, …) carry the same numbers.
import { collectDefaultMetrics, type Registry } from 'prom-client';

const MISNAMED = ['active_handles_total', 'active_requests_total', 'active_resources_total'];

export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const m of MISNAMED) registry.removeSingleMetric(`${prefix}nodejs_${m}`);
}

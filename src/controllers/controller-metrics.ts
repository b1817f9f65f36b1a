import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../observability/process-metrics.js';

/** The controller's metrics (prefix kata_controller_), on their own registry. */
export function controllerMetrics() {
  const registry = new Registry();
  collectProcessMetrics(registry, 'kata_controller_');
  return {
    registry,
    reconciles: new Counter({
      name: 'kata_controller_reconciles_total',
      help: 'Sandbox reconciles by result (success, requeue, error).',
      labelNames: ['result'],
      registers: [registry],
    }),
    reconcileSeconds: new Histogram({
      name: 'kata_controller_reconcile_duration_seconds',
      help: 'Time one sandbox reconcile took.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'kata_controller_queue_depth',
      help: 'Sandbox keys waiting to be reconciled.',
      registers: [registry],
    }),
    sandboxes: new Gauge({
      name: 'kata_controller_sandboxes',
      help: 'KataSandboxes by phase, as the controller last saw them.',
      labelNames: ['phase'],
      registers: [registry],
    }),
    scheduleSeconds: new Histogram({
      name: 'kata_controller_schedule_latency_seconds',
      help: 'Time from a sandbox’s creation to its Scheduled condition.',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    leader: new Gauge({
      name: 'kata_controller_leader',
      help: '1 while this replica holds the kata-controller lease.',
      registers: [registry],
    }),
  };
}

export type ControllerMetrics = ReturnType<typeof controllerMetrics>;

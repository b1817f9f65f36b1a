// Records events.k8s.io/v1 Events. Repeats within a window become a series on one Event; writes
// are coalesced and failures only logged: recording an Event never fails the caller's work.
import type { EventsV1Event, V1ObjectReference } from '@kubernetes/client-node';
import { PatchStrategy, setHeaderOptions, V1MicroTime } from '@kubernetes/client-node';
import { inBackground } from '../common/background.js';
import type { Logger } from '../observability/logger.js';
import { createLogger } from '../observability/logger.js';
import {
  EventCorrelator,
  eventKey,
  eventName,
  truncateNote,
  type SeriesEntry,
} from './event-correlator.js';
import { callApi, type KubeClients } from './kube-client.js';

export type EventType = 'Normal' | 'Warning';

// Who writes an Event, as the admission policy kata-node-agent-events holds node agents to it
// (deploy/policy/node-agent-events.yaml): a node agent signs as NODE_AGENT_REPORTER and
// nodeAgentInstance(its node), never as the controller.
export const CONTROLLER_REPORTER = 'kata.sandbox.io/controller';
export const NODE_AGENT_REPORTER = 'kata.sandbox.io/node-agent';
export const nodeAgentInstance = (node: string): string => `kata-node-agent-${node}`;

export interface EventRecorderOptions {
  clients: Pick<KubeClients, 'events'>;
  /** e.g. kata.sandbox.io/controller */
  reportingController: string;
  /** e.g. the pod or node name */
  reportingInstance: string;
  windowMs?: number;
  /** Repeats are written at most this often per series (default 5 s). */
  seriesFlushMs?: number;
  timeoutMs?: number;
  logger?: Logger;
  now?: () => number;
}

export interface RecordArgs {
  regarding: V1ObjectReference;
  type: EventType;
  reason: string;
  action: string;
  note: string;
  related?: V1ObjectReference;
}

export class EventRecorder {
  private readonly correlator: EventCorrelator;
  private readonly pending = new Set<Promise<void>>();
  private readonly flushTimers = new Map<SeriesEntry, NodeJS.Timeout>();
  /** Creates in progress: a repeat's series write waits for them. */
  private readonly creating = new Map<SeriesEntry, Promise<void>>();
  private readonly log: Logger;
  private readonly now: () => number;
  private seq = 0;
  readonly stats = { created: 0, seriesUpdates: 0, failures: 0 };

  constructor(private readonly opts: EventRecorderOptions) {
    this.correlator = new EventCorrelator(opts.windowMs);
    this.log = opts.logger ?? createLogger('events');
    this.now = opts.now ?? Date.now;
  }

  /** Fire and forget. */
  record(args: RecordArgs): void {
    try {
      const note = truncateNote(args.note);
      const namespace = args.regarding.namespace || 'default';
      const key = eventKey({ ...args, note });
      const c = this.correlator.observe(key, namespace, this.now());
      if (c.kind === 'new') {
        const p = this.create(c.entry, { ...args, note });
        this.creating.set(c.entry, p);
        this.track(p.finally(() => this.creating.delete(c.entry)));
      } else {
        this.scheduleSeries(c.entry);
      }
    } catch (err) {
      this.log.warn({ err, reason: args.reason }, 'event not recorded');
    }
  }

  normal(regarding: V1ObjectReference, reason: string, action: string, note: string): void {
    this.record({ regarding, type: 'Normal', reason, action, note });
  }

  warning(regarding: V1ObjectReference, reason: string, action: string, note: string): void {
    this.record({ regarding, type: 'Warning', reason, action, note });
  }

  /** Write pending series updates now and wait for every write in flight (shutdown, tests). */
  async flush(): Promise<void> {
    for (const [entry, timer] of this.flushTimers) {
      clearTimeout(timer);
      this.flushTimers.delete(entry);
      this.track(this.writeSeries(entry));
    }
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    inBackground(
      'writing an event',
      p.finally(() => this.pending.delete(p)),
      this.log,
    );
  }

  private async create(entry: SeriesEntry, args: RecordArgs): Promise<void> {
    const name = eventName(args.regarding.name ?? 'unknown', this.now(), this.seq++ % 1000);
    const body: EventsV1Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace: entry.namespace },
      eventTime: new V1MicroTime(entry.firstSeen),
      reportingController: this.opts.reportingController,
      reportingInstance: this.opts.reportingInstance,
      action: args.action,
      reason: args.reason,
      note: args.note,
      type: args.type,
      regarding: args.regarding,
      related: args.related,
    };
    try {
      await callApi(
        `create event ${args.reason}`,
        () => this.opts.clients.events.createNamespacedEvent({ namespace: entry.namespace, body }),
        { timeoutMs: this.opts.timeoutMs ?? 10_000 },
      );
      entry.eventName = name;
      this.stats.created++;
    } catch (err) {
      this.stats.failures++;
      this.log.warn(
        { err, reason: args.reason, regarding: args.regarding.name },
        'event not recorded',
      );
    }
  }

  private scheduleSeries(entry: SeriesEntry): void {
    if (this.flushTimers.has(entry)) return; // the pending write will carry the latest count
    const timer = setTimeout(() => {
      this.flushTimers.delete(entry);
      this.track(this.writeSeries(entry));
    }, this.opts.seriesFlushMs ?? 5_000);
    timer.unref();
    this.flushTimers.set(entry, timer);
  }

  private async writeSeries(entry: SeriesEntry): Promise<void> {
    await this.creating.get(entry);
    if (!entry.eventName) return; // the first write failed; nothing to attach a series to
    const body = {
      series: {
        count: entry.count,
        lastObservedTime: new V1MicroTime(entry.lastSeen).toISOString(),
      },
    };
    try {
      await callApi(
        `update event series ${entry.eventName}`,
        () =>
          this.opts.clients.events.patchNamespacedEvent(
            { namespace: entry.namespace, name: entry.eventName ?? '', body },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          ),
        { timeoutMs: this.opts.timeoutMs ?? 10_000 },
      );
      this.stats.seriesUpdates++;
    } catch (err) {
      this.stats.failures++;
      this.log.warn({ err, event: entry.eventName }, 'event series not updated');
    }
  }
}

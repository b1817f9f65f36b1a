// The node agent's heartbeat: keeps Lease kata-node-<node> in kata-system fresh (renew every 10 s,
// duration 40 s) and advertises the node's capacity in its annotations.
import type { V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../observability/logger.js';
import { createLogger } from '../observability/logger.js';
import { sleep } from '../common/sleep.js';
import type { KubeClients } from './kube-client.js';
import { isLostLeaseRace, upsertLease } from './lease-upsert.js';
import {
  allocationAnnotations,
  capacityAnnotations,
  KATA_SYSTEM_NAMESPACE,
  NODE_LEASE_DURATION_SECONDS,
  NODE_LEASE_RENEW_MS,
  nodeLeaseName,
  renewedLease,
  type NodeAllocation,
  type NodeCapacity,
} from './lease.js';

export interface NodeHeartbeatOptions {
  clients: Pick<KubeClients, 'coordination'>;
  nodeName: string;
  /** holderIdentity; default the node name. */
  identity?: string;
  /** Read at every renewal, so capacity changes are advertised. */
  capacity: () => NodeCapacity;
  /** Read at every renewal too: what the node's sandboxes hold, for whoever reads the Lease. */
  allocated?: () => NodeAllocation | undefined;
  /** Further annotations set at every renewal (the node's pull-secret key); plain data. */
  annotations?: Readonly<Record<string, string>>;
  namespace?: string;
  leaseDurationSeconds?: number;
  renewIntervalMs?: number;
  /** Per API call deadline (default 5 s). */
  timeoutMs?: number;
  logger?: Logger;
  /** After each successful renewal, with its time (epoch ms). */
  onRenewed?: (at: number) => void;
  /** After each failed renewal. */
  onFailed?: (err: unknown) => void;
}

export class NodeHeartbeat {
  private readonly stopper = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly log: Logger;
  /** When the last renewal succeeded (epoch ms), 0 before the first. */
  lastRenewed = 0;

  constructor(private readonly opts: NodeHeartbeatOptions) {
    this.log = opts.logger ?? createLogger('node-heartbeat');
  }

  get leaseName(): string {
    return nodeLeaseName(this.opts.nodeName);
  }

  private annotations(): Record<string, string> {
    const allocated = this.opts.allocated?.();
    return {
      ...this.opts.annotations,
      ...capacityAnnotations(this.opts.capacity()),
      ...(allocated && allocationAnnotations(allocated)),
    };
  }

  /** Create or update the Lease once; a 409 (someone wrote in between) is retried after a re-read. */
  async renewOnce(signal?: AbortSignal): Promise<V1Lease> {
    const namespace = this.opts.namespace ?? KATA_SYSTEM_NAMESPACE;
    const name = this.leaseName;
    const call = { signal, timeoutMs: this.opts.timeoutMs ?? 5_000 };
    const api = this.opts.clients.coordination;
    for (let attempt = 1; ; attempt++) {
      try {
        const out = await upsertLease(
          api,
          { namespace, name },
          (prev) =>
            renewedLease(
              prev,
              { namespace, name },
              this.opts.identity ?? this.opts.nodeName,
              this.opts.leaseDurationSeconds ?? NODE_LEASE_DURATION_SECONDS,
              new Date(),
              this.annotations(),
            ),
          call,
        );
        this.lastRenewed = Date.now();
        return out as V1Lease;
      } catch (err) {
        if (attempt >= 3 || !isLostLeaseRace(err)) throw err;
      }
    }
  }

  /** Renew now and then every interval until stop(); failures are logged and retried next tick. */
  start(): void {
    if (this.loop) return;
    const signal = this.stopper.signal;
    const every = this.opts.renewIntervalMs ?? NODE_LEASE_RENEW_MS;
    this.loop = (async () => {
      while (!signal.aborted) {
        try {
          await this.renewOnce(signal);
          this.opts.onRenewed?.(this.lastRenewed);
        } catch (err) {
          if (signal.aborted) break;
          this.log.warn({ err, lease: this.leaseName }, 'lease renewal failed');
          this.opts.onFailed?.(err);
        }
        // Jitter (up to −10 %) so many agents restarted together do not renew in lockstep.
        await sleep(every * (0.9 + Math.random() * 0.1), signal).catch(() => undefined);
      }
    })();
  }

  /** Stop renewing; the Lease is left to expire (that is how the controller learns the node left). */
  async stop(): Promise<void> {
    this.stopper.abort(new Error('heartbeat stopped'));
    await this.loop;
  }
}

// Leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm, simplified): acquire
// when the Lease is free, expired or ours; renew with its resourceVersion (409 = someone else won);
// step down when no renewal succeeded within renewDeadline; release (clear holder) on stop.
import { V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../observability/logger.js';
import { createLogger } from '../observability/logger.js';
import { sleep } from '../common/sleep.js';
import type { KubeClients } from './kube-client.js';
import { isLostLeaseRace, upsertLease } from './lease-upsert.js';
import { canAcquire, CONTROLLER_LEASE_NAME, KATA_SYSTEM_NAMESPACE, renewedLease } from './lease.js';

export interface LeaderElectionOptions {
  clients: Pick<KubeClients, 'coordination'>;
  /** This replica's identity (pod name + random suffix); must be unique among candidates. */
  identity: string;
  namespace?: string;
  leaseName?: string;
  /** Defaults 15 s / 10 s / 2 s (DESIGN). */
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Called on becoming leader; `signal` aborts when leadership is lost or the elector stops. */
  onStartedLeading?: (signal: AbortSignal) => void;
  onStoppedLeading?: () => void;
  /** Called whenever the observed holder changes (including to ourselves). */
  onNewLeader?: (identity: string) => void;
  logger?: Logger;
}

export class LeaderElector {
  private readonly stopper = new AbortController();
  private loop: Promise<void> | undefined;
  private leading = false;
  private leaderSignal: AbortController | undefined;
  private observedHolder = '';
  private readonly log: Logger;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.log = opts.logger ?? createLogger('leader-election');
    const d = this.durations();
    if (d.renewDeadline >= d.leaseDuration)
      throw new Error('renewDeadline must be shorter than leaseDuration');
    if (d.retryPeriod >= d.renewDeadline)
      throw new Error('retryPeriod must be shorter than renewDeadline');
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The holder last seen on the Lease ('' if none). */
  get leader(): string {
    return this.observedHolder;
  }

  private durations() {
    return {
      leaseDuration: this.opts.leaseDurationMs ?? 15_000,
      renewDeadline: this.opts.renewDeadlineMs ?? 10_000,
      retryPeriod: this.opts.retryPeriodMs ?? 2_000,
    };
  }

  private ref() {
    return {
      namespace: this.opts.namespace ?? KATA_SYSTEM_NAMESPACE,
      name: this.opts.leaseName ?? CONTROLLER_LEASE_NAME,
    };
  }

  private observe(lease: V1Lease | undefined): void {
    const holder = lease?.spec?.holderIdentity ?? '';
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      if (holder) this.opts.onNewLeader?.(holder);
    }
  }

  /** One attempt to take or keep the Lease; true when we hold it afterwards. */
  async tryAcquireOrRenew(signal?: AbortSignal): Promise<boolean> {
    const { namespace, name } = this.ref();
    const api = this.opts.clients.coordination;
    const call = { signal, timeoutMs: this.durations().retryPeriod };
    const seconds = Math.max(1, Math.ceil(this.durations().leaseDuration / 1000));
    try {
      const out = await upsertLease(
        api,
        { namespace, name },
        (prev) => {
          this.observe(prev);
          if (prev && !canAcquire(prev, this.opts.identity, Date.now())) return undefined;
          return renewedLease(prev, { namespace, name }, this.opts.identity, seconds, new Date());
        },
        call,
      );
      if (!out) return false;
      this.observe(out);
      return true;
    } catch (err) {
      if (isLostLeaseRace(err)) return false; // another candidate wrote first
      throw err;
    }
  }

  /** Run until stop(): contend, lead while renewals succeed, contend again after losing. */
  start(): void {
    if (this.loop) return;
    this.loop = this.run().catch((err: unknown) =>
      this.log.error({ err }, 'leader election crashed'),
    );
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    const { retryPeriod, renewDeadline } = this.durations();
    let lastRenew = 0;
    while (!signal.aborted) {
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew(signal);
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn({ err, identity: this.opts.identity }, 'lease acquire/renew failed');
      }
      if (signal.aborted) break;
      const now = Date.now();
      if (ok) {
        lastRenew = now;
        if (!this.leading) this.becomeLeader();
      } else if (
        this.leading &&
        (this.observedHolder !== this.opts.identity || now - lastRenew >= renewDeadline)
      ) {
        this.stepDown('lost lease');
      }
      // Jitter only while contending, so candidates do not collide; a leader renews on the beat.
      const wait = this.leading ? retryPeriod : retryPeriod * (1 + Math.random() * 0.2);
      await sleep(wait, signal).catch(() => undefined);
    }
  }

  private becomeLeader(): void {
    this.leading = true;
    this.leaderSignal = new AbortController();
    this.log.info({ identity: this.opts.identity }, 'became leader');
    try {
      this.opts.onStartedLeading?.(this.leaderSignal.signal);
    } catch (err) {
      this.log.error({ err }, 'onStartedLeading threw');
    }
  }

  private stepDown(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.leaderSignal?.abort(new Error(`leadership ended: ${why}`));
    this.log.warn({ identity: this.opts.identity, why }, 'stopped leading');
    try {
      this.opts.onStoppedLeading?.();
    } catch (err) {
      this.log.error({ err }, 'onStoppedLeading threw');
    }
  }

  /** Stop contending; if leading, step down and release the Lease so a successor need not wait. */
  async stop(timeoutMs = 5_000): Promise<void> {
    this.stopper.abort(new Error('leader election stopped'));
    await this.loop;
    if (!this.leading) return;
    this.stepDown('stopping');
    await this.release(timeoutMs).catch((err: unknown) =>
      this.log.warn({ err }, 'lease release failed'),
    );
  }

  private async release(timeoutMs: number): Promise<void> {
    const { namespace, name } = this.ref();
    const api = this.opts.clients.coordination;
    const call = { timeoutMs };
    await upsertLease(
      api,
      { namespace, name },
      (lease) =>
        lease?.spec?.holderIdentity !== this.opts.identity
          ? undefined
          : {
              ...lease,
              metadata: { ...lease.metadata, managedFields: undefined },
              spec: {
                ...lease.spec,
                holderIdentity: undefined,
                leaseDurationSeconds: 1,
                renewTime: new V1MicroTime(),
              },
            },
      call,
    );
  }
}

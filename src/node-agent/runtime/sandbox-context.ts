// What one sandbox's steps share, and nothing more: its spec and state file, saving that state
// (in order, never after removal), telling status something changed, Events, the running VM and
// its agent, and the two abort signals. The create steps, the container supervisor, adoption and
// teardown each take this context; the façade (sandbox-runtime.ts) owns it.
import type { KataSandbox, KataSandboxSpec } from '../../crds/index.js';
import type { AgentConnection } from '../../agent/agent-connection.js';
import type { Logger } from '../../observability/logger.js';
import type { NodeAgentConfig } from '../config.js';
import type { PreparedImage } from '../images/container-images.js';
import type { NodeAgentMetrics } from '../metrics/node-agent-metrics.js';
import type { SandboxState, StateStore } from '../state-store.js';
import type { BlockDrivePlan } from '../storage/block-drives.js';
import type { RunningVm } from '../hypervisor/qemu-process.js';
import type { SandboxHost } from './sandbox-host.js';
import { StepError } from './step-failure.js';

export type EventType = 'Normal' | 'Warning';

export interface SandboxContextDeps {
  config: NodeAgentConfig;
  store: Pick<StateStore, 'save' | 'remove'>;
  metrics: NodeAgentMetrics;
  host: SandboxHost;
  /** Something status shows changed: re-apply status. */
  onChange: () => void;
  event: (type: EventType, reason: string, note: string) => void;
}

export class SandboxContext {
  vm: RunningVm | undefined;
  agent: Pick<AgentConnection, 'client' | 'close'> | undefined;
  /** Ends the create steps (deletion, or the sandbox ending). */
  readonly createAbort = new AbortController();
  /** Ends container watchers, output pumps and restart backoffs. */
  readonly watchAbort = new AbortController();
  blockPlan: BlockDrivePlan | undefined;
  /** Each image container's image, once its view is bound into the share. */
  readonly images = new Map<string, Promise<PreparedImage>>();
  readonly imageConfigs = new Map<string, PreparedImage['handle']>();
  /** Release or destroy began: nothing new starts. */
  stopping = false;
  /** The state file is gone: nothing saves it again. */
  removed = false;
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: SandboxContextDeps,
    public sandbox: KataSandbox,
    readonly state: SandboxState,
    /** False until something was put on the host (the state file exists). */
    public persisted: boolean,
    readonly log: Logger,
  ) {}

  get uid(): string {
    return this.state.uid;
  }

  /** What the VM's host objects are named by: the sandbox's uid, or the warm VM's it took. */
  get vmUid(): string {
    return this.state.warm?.vmUid ?? this.state.uid;
  }

  /** The CRD makes spec immutable: updates of the object never change it. */
  get spec(): KataSandboxSpec {
    return this.sandbox.spec;
  }

  get config(): NodeAgentConfig {
    return this.deps.config;
  }

  get host(): SandboxHost {
    return this.deps.host;
  }

  get metrics(): NodeAgentMetrics {
    return this.deps.metrics;
  }

  get ended(): boolean {
    return this.state.end !== undefined;
  }

  get vmRunning(): boolean {
    return this.vm?.running ?? false;
  }

  changed(): void {
    this.deps.onChange();
  }

  event(type: EventType, reason: string, note: string): void {
    this.deps.event(type, reason, note);
  }

  /** The running VM's agent; a step without one fails (AgentLost). */
  client(): AgentConnection['client'] {
    if (!this.agent)
      throw new StepError({
        condition: 'AgentConnected',
        reason: 'AgentLost',
        message: 'no agent connection',
      });
    return this.agent.client;
  }

  /** Saves the state file, after any save still in flight; never once it was removed. */
  save(): Promise<void> {
    if (this.removed) return Promise.resolve();
    this.persisted = true;
    const next = this.saving.then(() =>
      this.removed ? undefined : this.deps.store.save(this.state),
    );
    this.saving = next.catch((err: unknown) => this.log.error({ err }, 'saving state failed'));
    return next;
  }

  /** Waits for the saves in flight, then removes the state file for good. */
  async removeState(): Promise<void> {
    await this.saving.catch(() => {});
    this.removed = true;
    await this.deps.store.remove(this.uid);
  }
}

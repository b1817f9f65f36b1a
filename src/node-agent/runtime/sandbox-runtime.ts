// The host work of one sandbox (DESIGN §4), as a façade over its context: the create steps
// (create-steps.ts) then its containers (container-supervisor.ts) in the background; the VM's exit
// watch; the sandbox's end (a failure, or every container done); adoption of a VM a previous node
// agent started; and the two ways out (teardown.ts): release and destroy. What status shows is
// read from here (facts).
import { readFile } from 'node:fs/promises';
import type PQueue from 'p-queue';
import type { KataSandbox, KataSandboxSpec } from '../../crds/index.js';
import { inBackground } from '../../common/background.js';
import { outsideReconcile } from '../../observability/reconcile-context.js';
import { sandboxFields, type Logger } from '../../observability/logger.js';
import { failureCause } from './failure-cause.js';
import { newSandboxState, type SandboxState } from '../state-store.js';
import { adoptVm } from './adoption.js';
import { ContainerSupervisor } from './container-supervisor.js';
import type { AgentClient } from '../../agent/agent-client.js';
import type { BuiltProcess } from '../../agent/process-spec.js';
import { buildExecProcess } from '../oci/container-spec.js';
import type { OutputTap } from './output-tap.js';
import { createSandbox, startContainers } from './create-steps.js';
import { SandboxContext, type SandboxContextDeps } from './sandbox-context.js';
import { nodeSandboxHost, type NodeSandboxHostOptions } from './sandbox-host.js';
import { vmStatusOf, type RuntimeFacts, type StepFailure } from './sandbox-status.js';
import { classify } from './step-failure.js';
import { sampleGuest, type GuestSample } from './guest-stats.js';
import { destroySandbox, releaseSandbox } from './teardown.js';
import { causeOf, vmExitFailure } from './vm-exit.js';

export type RuntimeDeps = Omit<SandboxContextDeps, 'host'> &
  Omit<NodeSandboxHostOptions, 'config' | 'logger'> & {
    logger: Logger;
    /** Bounds how many sandboxes are being created at once. */
    createSlots: PQueue;
    /** Replaces the node's host (unit tests: a recording fake). */
    host?: SandboxContextDeps['host'];
  };

export class SandboxRuntime {
  private readonly ctx: SandboxContext;
  private readonly containers: ContainerSupervisor;
  private task: Promise<void> | undefined;
  private releasing: Promise<void> | undefined;
  private destroying: Promise<void> | undefined;
  /** The periodic network check found the host wiring cut (NetworkReady=False until it is back). */
  private networkLost: { reason: string; message: string } | undefined;
  /** The last figures the guest gave (sampleGuest), none while it is not up. */
  private guest: GuestSample | undefined;
  readonly log: Logger;

  constructor(
    private readonly deps: RuntimeDeps,
    sandbox: KataSandbox,
    state: SandboxState,
    /** False until something was put on the host (the state file exists). */
    persisted: boolean,
  ) {
    this.log = deps.logger.child(sandboxFields(state));
    const host = deps.host ?? nodeSandboxHost({ ...deps, logger: this.log });
    this.ctx = new SandboxContext({ ...deps, host }, sandbox, state, persisted, this.log);
    const ctx = this.ctx;
    this.containers = new ContainerSupervisor({
      spec: sandbox.spec,
      state,
      log: this.log,
      config: deps.config,
      signal: ctx.watchAbort.signal,
      stopping: () => ctx.stopping,
      ended: () => ctx.ended,
      client: () => ctx.client(),
      agent: () => ctx.agent?.client,
      vmRunning: () => ctx.vmRunning,
      image: (name) => ctx.imageConfigs.get(name),
      blockPlan: () => ctx.blockPlan,
      save: () => ctx.save(),
      changed: () => ctx.changed(),
      allRunning: () => this.becameReady(),
      end: (end, failure) => this.end(end, failure),
      fail: (failure) => this.fail(failure),
    });
  }

  static fresh(deps: RuntimeDeps, sb: KataSandbox, now = new Date()): SandboxRuntime {
    const meta = {
      uid: sb.metadata.uid as string,
      namespace: sb.metadata.namespace as string,
      name: sb.metadata.name as string,
    };
    return new SandboxRuntime(deps, sb, newSandboxState(meta, now), false);
  }

  /** A runtime for what a previous node agent left in the state file. */
  static restore(deps: RuntimeDeps, sb: KataSandbox, state: SandboxState): SandboxRuntime {
    return new SandboxRuntime(deps, sb, state, true);
  }

  get uid(): string {
    return this.ctx.uid;
  }

  get state(): SandboxState {
    return this.ctx.state;
  }

  get spec(): KataSandboxSpec {
    return this.ctx.spec;
  }

  get ended(): boolean {
    return this.ctx.ended;
  }

  /** The running VM's agent client, for exec and attach; none before boot or after the end. */
  get agentClient(): AgentClient | undefined {
    return this.ctx.vmRunning && !this.ended ? this.ctx.agent?.client : undefined;
  }

  /** The process of an exec of `command` in container `name` (its env, working dir, user). */
  execProcess(name: string, command: string[], tty: boolean): BuiltProcess {
    const index = this.spec.containers.findIndex((c) => c.name === name);
    const c = this.spec.containers[index];
    if (!c) throw new Error(`container ${name} is not in the sandbox`);
    const image = this.ctx.imageConfigs.get(name);
    return buildExecProcess(
      {
        container: c,
        field: `spec.containers[${index}]`,
        ...(image && { image: image.config, imageUserGroups: image.userGroups }),
      },
      command,
      tty,
    );
  }

  /** A container's output as it is written, for attach. */
  outputOf(name: string): OutputTap {
    return this.containers.tapOf(name);
  }

  get qemuPid(): number | undefined {
    return this.ctx.vm?.running ? this.ctx.vm.pid : undefined;
  }

  /** The last sample, while the VM still runs: an ended sandbox's series go at once. */
  get guestSample(): GuestSample | undefined {
    return this.ctx.vmRunning && !this.ended ? this.guest : undefined;
  }

  get gone(): boolean {
    return this.ctx.removed;
  }

  update(sb: KataSandbox): void {
    this.ctx.sandbox = sb;
  }

  facts(): RuntimeFacts {
    const { state, spec, sandbox } = this.ctx;
    const vm = vmStatusOf(state);
    return {
      ...(sandbox.metadata.generation !== undefined && {
        generation: sandbox.metadata.generation,
      }),
      containerNames: spec.containers.map((c) => c.name),
      containers: state.containers,
      ...(vm && { vm }),
      vmRunning: this.ctx.vmRunning && !this.ended,
      agentConnected: state.agentReady,
      networkReady:
        (spec.network?.mode ?? 'none') === 'none'
          ? state.shareDir !== undefined || state.qemu !== undefined
          : state.guestNetwork !== undefined,
      ...(state.guestNetwork && { network: state.guestNetwork }),
      ...(this.networkLost && { networkLost: this.networkLost }),
      ...(state.failure && { failure: state.failure }),
      ...(state.end && {
        end: { reason: state.end.reason, message: state.end.message },
      }),
    };
  }

  /** Starts (or resumes) the create steps in the background; once per runtime. */
  start(): void {
    const ctx = this.ctx;
    if (this.task || ctx.ended || ctx.stopping) return;
    // The slot bounds preparation and boot; waiting for images (which may back off for minutes)
    // and starting containers happen outside it, so a refusing registry never blocks other boots.
    // The runtime outlives the reconcile that starts it: its lines carry the sandbox, not that
    // reconcile's id.
    this.task = outsideReconcile(() =>
      this.deps.createSlots
        .add(() => createSandbox(ctx, { vmStarted: () => this.watchVm() }), {
          signal: ctx.createAbort.signal,
        })
        .then(() => startContainers(ctx, this.containers))
        .then(
          () => undefined,
          (err: unknown) => {
            if (ctx.stopping || ctx.createAbort.signal.aborted) return;
            inBackground(
              'failing the sandbox',
              this.fail(classify(err, 'VMReady', 'CreateFailed')),
              this.log,
            );
          },
        ),
    );
  }

  private watchVm(): void {
    const q = this.ctx.vm;
    if (!q) return;
    inBackground(
      'the VM exit watch',
      q.exited.then(async (status) => {
        if (this.ctx.stopping || this.ctx.vm !== q) return;
        await this.fail(await vmExitFailure(this.ctx, q, status));
      }),
      this.log,
    );
  }

  /** Every container runs: the sandbox is Ready (once). */
  private becameReady(): void {
    const { state, sandbox, spec } = this.ctx;
    if (state.readyAt) return;
    state.readyAt = new Date().toISOString();
    const created = sandbox.metadata.creationTimestamp;
    if (created) {
      const secs = (Date.now() - new Date(created).getTime()) / 1000;
      this.deps.metrics.createToRunningSeconds.observe(secs);
    }
    this.ctx.event(
      'Normal',
      'Ready',
      `sandbox running: ${spec.containers.length} container(s), QEMU pid ${this.ctx.vm?.pid ?? '?'}`,
    );
    inBackground('saving the state', this.ctx.save(), this.log);
  }

  // --- ends ---------------------------------------------------------------------------------

  private async fail(step: StepFailure): Promise<void> {
    const failure = await causeOf(this.ctx, step);
    this.log.warn({ reason: failure.reason, message: failure.message }, 'sandbox failed');
    this.deps.metrics.failures.inc({ reason: failure.reason, cause: failureCause(failure.reason) });
    this.ctx.event('Warning', failure.reason, failure.message.slice(0, 1000));
    await this.end({ reason: failure.reason, message: failure.message }, failure);
  }

  private async end(
    end: { reason: string; message: string },
    failure?: StepFailure,
  ): Promise<void> {
    const ctx = this.ctx;
    if (ctx.ended || ctx.stopping) return;
    ctx.state.end = { ...end, at: new Date().toISOString() };
    if (failure) ctx.state.failure = failure;
    // A state disk that refuses the write (full) must not keep the end from the status and the
    // host from its release: the save logged its error; recovery reports a VM without its end.
    if (ctx.persisted) await ctx.save().catch(() => undefined);
    this.log.info({ reason: end.reason }, 'sandbox ended');
    ctx.changed();
    await this.release().catch((err: unknown) => {
      this.log.error({ err }, 'releasing the host failed; trying again');
      this.releaseLater();
    });
    ctx.changed();
  }

  /**
   * An ended sandbox's release that failed (a CNI DEL: its address and port are still held) is
   * tried again, 1 s doubling to a minute, until it succeeds or a destroy takes over.
   */
  releaseLater(delayMs = 1000): void {
    const timer = setTimeout(() => {
      if (this.destroying || this.ctx.removed) return;
      this.release().catch((err: unknown) => {
        this.log.warn({ err, delayMs }, 'releasing the host failed again');
        this.releaseLater(Math.min(delayMs * 2, 60_000));
      });
    }, delayMs);
    timer.unref();
  }

  /** Stops the VM and removes mounts and run dir; the state (with the end) stays. Idempotent. */
  release(): Promise<void> {
    // A release that failed (a full state disk) is tried again by the next call, not remembered.
    this.releasing ??= releaseSandbox(this.ctx, this.task).catch((err: unknown) => {
      this.releasing = undefined;
      throw err;
    });
    return this.releasing;
  }

  /** Deletion: containers stopped gracefully, then everything on the host goes. Idempotent. */
  destroy(): Promise<void> {
    this.destroying ??= destroySandbox(this.ctx, this.containers, this.task, () =>
      this.release(),
    ).catch((err: unknown) => {
      this.destroying = undefined;
      throw err;
    });
    return this.destroying;
  }

  // --- adoption -----------------------------------------------------------------------------

  /**
   * A previous node agent's VM: adopt it when the same QEMU still runs and answers QMP and the
   * agent answers; false when it is gone (the caller reports and cleans).
   */
  async adopt(resume = true): Promise<boolean> {
    if (!(await adoptVm(this.ctx))) return false;
    this.watchVm();
    if (resume) this.start();
    return true;
  }

  /**
   * Re-checks that a running sandbox's taps and redirects are still on the host; a change flips
   * NetworkReady (and makes an Event). The sandbox keeps running: its containers may not need
   * the network, and an operator may restore the wiring.
   */
  async checkNetwork(signal: AbortSignal): Promise<void> {
    const ctx = this.ctx;
    const rec = ctx.state.network;
    if (!rec || !ctx.state.guestNetwork || ctx.ended || ctx.stopping || !ctx.vmRunning) return;
    const health = await ctx.host.network.health(this.uid, rec, signal);
    if (ctx.ended || ctx.stopping) return;
    const was = this.networkLost;
    this.networkLost = health.ok ? undefined : { reason: health.reason, message: health.message };
    if (this.networkLost?.message === was?.message) return;
    if (this.networkLost && !was) {
      this.log.warn({ reason: this.networkLost.reason }, this.networkLost.message);
      ctx.event('Warning', this.networkLost.reason, this.networkLost.message.slice(0, 1000));
    } else if (!this.networkLost) {
      this.log.info('network wiring is back');
      ctx.event('Normal', 'NetworkRestored', "the VM's taps and redirects are in place again");
    }
    ctx.changed();
  }

  /**
   * Asks the guest for its memory and its running containers' figures (guest-stats.ts); a sandbox
   * whose VM or agent is not up has no sample.
   */
  async sampleGuest(timeoutMs: number, signal: AbortSignal): Promise<void> {
    const { state, agent } = this.ctx;
    const up = agent && this.ctx.vmRunning && state.agentReady && !this.ended && !this.ctx.stopping;
    if (!up) {
      this.guest = undefined;
      return;
    }
    const running = Object.entries(state.containers)
      .filter(([, c]) => c.state === 'Running')
      .map(([name]) => name);
    const known = new Set(['lo', ...(state.guestNetwork?.interfaces ?? []).map((i) => i.name)]);
    this.guest = await sampleGuest(agent.client, running, known, { timeoutMs, signal });
  }

  /** The controller gave up on the sandbox (e.g. NodeLost): end it and free the host. */
  async abandon(reason: string, message: string): Promise<void> {
    await this.fail({
      condition: 'VMReady',
      reason,
      message: message || `the sandbox is ${reason}`,
    });
  }

  /** The VM a previous node agent started is gone (or unadoptable): report it and clean. */
  async reportVmGone(): Promise<void> {
    const pid = this.ctx.state.qemu?.info.pid;
    const consoleLog = this.ctx.state.qemu?.info.consoleLog;
    const tail = consoleLog
      ? (await readFile(consoleLog, 'utf8').catch(() => '')).split('\n').filter(Boolean).slice(-20)
      : [];
    await this.fail({
      condition: 'VMReady',
      reason: 'VMExited',
      message: `QEMU (pid ${pid ?? '?'}) exited while the node agent was away; console (last ${tail.length} lines):\n${tail.join('\n')}`,
    });
  }
}

// The host work of one sandbox (DESIGN §4), each step idempotent and recorded in its state file:
// host path check → share + bind mounts → image pulls (alongside the boot) → QEMU + agent →
// CreateSandbox → per container (its image ready) CreateContainer + StartContainer; then watching
// containers (restart policy, logs, the end) and QEMU; and the two ways out: release (the sandbox
// ended: VM, mounts and image views go, state stays) and destroy (deletion: graceful container
// stop, then everything goes).
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import PQueue from 'p-queue';
import { createSandboxRequest } from '../../agent/sandbox-request.js';
import { sharedDirStorage } from '../../agent/storage.js';
import {
  CONTAINER_PROBLEM_REASONS,
  vmMemoryMiB,
  type KataSandbox,
  type KataSandboxSpec,
} from '../../crds/index.js';
import { sandboxFields, type Logger } from '../../observability/logger.js';
import type { NodeAgentConfig } from '../config.js';
import { sandboxLogDir } from './container-log.js';
import { sandboxDns } from '../guest-dns.js';
import type { HostFs } from '../host-fs/types.js';
import type { AcceleratorChoice } from '../hypervisor/accelerator.js';
import {
  type ContainerImages,
  type PreparedImage,
  invalidImage,
} from '../images/container-images.js';
import { RootfsViews } from '../images/rootfs-view.js';
import { parseImageReference, repositoryName } from '../images/reference.js';
import type { GuestImagePaths } from '../hypervisor/guest-image.js';
import { memoryShortfall } from '../hypervisor/guest-memory.js';
import { chooseLaunchStrategy, QemuProcess, type ExitStatus } from '../hypervisor/qemu-process.js';
import { QmpClient } from '../hypervisor/qmp-client.js';
import type { NodeAgentMetrics } from '../node-agent-metrics.js';
import { netnsLaunchPrefix } from '../network/tcfilter.js';
import type { PullSecretsRead, PullSecretsRequest } from '../pull-secrets.js';
import { guestNetworkStatus, type RuntimeFacts, type StepFailure } from './sandbox-status.js';
import { checkSandboxHostPaths } from '../storage/sandbox-host-paths.js';
import { prepareShareMounts } from '../storage/share-mounts.js';
import { bindIntoShare, rootfsTarget, shareTarget, teardownShare } from '../storage/shared-dir.js';
import {
  NO_NETWORK,
  unsupportedFeature,
  type NetworkPlan,
  type NetworkStep,
} from '../spec-support.js';
import { newSandboxState, type SandboxState, type StateStore } from '../state-store.js';
import type { BlockDrivePlan } from '../storage/block-drives.js';
import { AgentConnection, bootSandboxVm, sandboxVmConfig, vmFiles } from '../vm-launch.js';
import { failureCause } from '../failure-cause.js';
import type { VmCgroups } from '../cgroups/vm-cgroups.js';
import { outsideReconcile } from '../../observability/reconcile-context.js';
import { alreadyDone, classify, step, StepError, VM_END_REASONS } from './step-failure.js';
import { blockDrivePlan, driveOpenFailure } from './block-drive-plan.js';
import { AGENT_CALL_MS, ContainerSupervisor } from './container-supervisor.js';
import { killOrphanQemu } from './orphan-qemu.js';
import { inBackground } from '../../common/background.js';
import { sandboxDirs } from '../sandbox-dirs.js';

export interface RuntimeDeps {
  config: NodeAgentConfig;
  store: StateStore;
  metrics: NodeAgentMetrics;
  logger: Logger;
  guestImage: () => GuestImagePaths;
  accelerator: (requested: 'auto' | 'kvm' | 'tcg') => Promise<AcceleratorChoice>;
  /** Bounds how many sandboxes are being created at once. */
  createSlots: PQueue;
  network?: NetworkStep;
  /** The image cache; without it a container with `image` is refused (NotSupported). */
  images?: ContainerImages;
  /** A sandbox's imagePullSecrets, from the controller's projection for it on this node. */
  pullSecrets?: (req: PullSecretsRequest) => Promise<PullSecretsRead>;
  /** Where rootfs views live (hostPath rootfs too); default <stateDir>/rootfs-views. */
  views?: RootfsViews;
  /** Each VM in cgroups of its own, its memory limited there; without: the agent's cgroups. */
  vmCgroups?: VmCgroups;
  /** Something status shows changed: re-apply status. */
  onChange: () => void;
  event: (type: 'Normal' | 'Warning', reason: string, note: string) => void;
}

export class SandboxRuntime {
  private qemu: QemuProcess | undefined;
  private agent: AgentConnection | undefined;
  /** Ends the create steps (deletion, or the sandbox ending). */
  private readonly createAbort = new AbortController();
  /** Ends container watchers, output pumps and restart backoffs. */
  private readonly watchAbort = new AbortController();
  private task: Promise<void> | undefined;
  private blockPlan: BlockDrivePlan | undefined;
  private readonly hostFs: HostFs;
  private readonly views: RootfsViews;
  /** Each image container's image, once its view is bound into the share. */
  private readonly images = new Map<string, Promise<PreparedImage>>();
  private readonly imageConfigs = new Map<string, PreparedImage['handle']>();
  private stopping = false;
  private releasing: Promise<void> | undefined;
  private destroying: Promise<void> | undefined;
  private removed = false;
  /** The periodic network check found the host wiring cut (NetworkReady=False until it is back). */
  private networkLost: { reason: string; message: string } | undefined;
  private saving: Promise<void> = Promise.resolve();
  private readonly containers: ContainerSupervisor;
  readonly log: Logger;

  constructor(
    private readonly deps: RuntimeDeps,
    private sandbox: KataSandbox,
    readonly state: SandboxState,
    /** False until something was put on the host (the state file exists). */
    private persisted: boolean,
  ) {
    this.log = deps.logger.child(sandboxFields(state));
    this.hostFs = { binary: deps.config.hostFsBinary };
    this.views = deps.views ?? defaultViews(deps.config, this.log);
    this.containers = new ContainerSupervisor({
      // The CRD makes spec immutable: updates of the object never change it.
      spec: sandbox.spec,
      state,
      log: this.log,
      config: deps.config,
      signal: this.watchAbort.signal,
      stopping: () => this.stopping,
      ended: () => this.ended,
      client: () => this.client(),
      agent: () => this.agent?.client,
      vmRunning: () => this.qemu?.running ?? false,
      image: (name) => this.imageConfigs.get(name),
      blockPlan: () => this.blockPlan,
      save: () => this.save(),
      changed: () => this.deps.onChange(),
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
    return this.state.uid;
  }

  get spec(): KataSandboxSpec {
    return this.sandbox.spec;
  }

  get ended(): boolean {
    return this.state.end !== undefined;
  }

  get qemuPid(): number | undefined {
    return this.qemu?.running ? this.qemu.pid : undefined;
  }

  get gone(): boolean {
    return this.removed;
  }

  update(sb: KataSandbox): void {
    this.sandbox = sb;
  }

  facts(): RuntimeFacts {
    const q = this.state.qemu;
    return {
      ...(this.sandbox.metadata.generation !== undefined && {
        generation: this.sandbox.metadata.generation,
      }),
      containerNames: this.spec.containers.map((c) => c.name),
      containers: this.state.containers,
      ...(q && {
        vm: {
          pid: q.info.pid,
          accelerator: q.accelerator,
          bootMillis: q.bootMillis,
          startedAt: q.startedAt,
        },
      }),
      vmRunning: this.qemu?.running === true && !this.ended,
      agentConnected: this.state.agentReady,
      networkReady:
        (this.spec.network?.mode ?? 'none') === 'none'
          ? this.state.shareDir !== undefined || this.state.qemu !== undefined
          : this.state.guestNetwork !== undefined,
      ...(this.state.guestNetwork && { network: this.state.guestNetwork }),
      ...(this.networkLost && { networkLost: this.networkLost }),
      ...(this.state.failure && { failure: this.state.failure }),
      ...(this.state.end && {
        end: { reason: this.state.end.reason, message: this.state.end.message },
      }),
    };
  }

  /** Starts (or resumes) the create steps in the background; once per runtime. */
  start(): void {
    if (this.task || this.ended || this.stopping) return;
    // The slot bounds preparation and boot; waiting for images (which may back off for minutes)
    // and starting containers happen outside it, so a refusing registry never blocks other boots.
    // The runtime outlives the reconcile that starts it: its lines carry the sandbox, not that
    // reconcile's id.
    this.task = outsideReconcile(() =>
      this.deps.createSlots
        .add(() => this.create(), { signal: this.createAbort.signal })
        .then(() => this.startContainers())
        .then(
          () => undefined,
          (err: unknown) => {
            if (this.stopping || this.createAbort.signal.aborted) return;
            inBackground(
              'failing the sandbox',
              this.fail(classify(err, 'VMReady', 'CreateFailed')),
              this.log,
            );
          },
        ),
    );
  }

  // --- create -------------------------------------------------------------------------------

  private async create(): Promise<void> {
    const signal = this.createAbort.signal;
    const refused = unsupportedFeature(this.spec, { images: this.deps.images !== undefined });
    if (refused) throw new StepError(refused);
    const badImage = invalidImage(this.spec, this.deps.images?.allowedRegistries);
    if (badImage) {
      throw new StepError({
        condition: 'ContainersReady',
        reason: badImage.reason,
        message: badImage.message,
      });
    }
    // Nothing touches the host before every host path was opened beneath a root admitting it.
    const checked = await checkSandboxHostPaths(this.hostFs, this.spec, this.deps.config, signal);
    (this.deps.network ?? NO_NETWORK).validate(this.spec);
    this.blockPlan = await step('ContainersReady', 'InvalidBlockDevice', () =>
      Promise.resolve(blockDrivePlan(this.spec, checked)),
    );
    signal.throwIfAborted();

    const { runDir, shareDir } = sandboxDirs(this.deps.config.runDir, this.uid);
    this.state.runDir = runDir;
    await this.save();
    await mkdir(runDir, { recursive: true, mode: 0o700 });

    await step('VMReady', 'SharedDirFailed', async () => {
      await mkdir(shareDir, { recursive: true, mode: 0o755 });
      this.state.shareDir = shareDir;
      await this.save();
      await prepareShareMounts({
        hostFs: this.hostFs,
        views: this.views,
        uid: this.uid,
        spec: this.spec,
        checked,
        shareDir,
        // Recorded before it is made: a crash in between still finds it at teardown.
        record: async (target) => {
          if (this.state.bindMounts.includes(target)) return;
          this.state.bindMounts.push(target);
          await this.save();
        },
        signal,
      });
    });
    this.deps.onChange();
    this.startImagePulls(shareDir, signal);

    if (!this.qemu) await this.boot(runDir, shareDir, signal);

    const client = this.client();
    if (!this.state.sandboxCreated) {
      await this.configureGuestNetwork(signal);
      await step('AgentConnected', 'CreateSandboxFailed', async () => {
        const req = createSandboxRequest({
          sandboxId: this.uid,
          hostname: this.spec.hostname ?? this.state.name.slice(0, 63),
          dns: await sandboxDns(this.spec.dns),
          storages: [sharedDirStorage()],
        });
        await client.createSandbox(req, { timeoutMs: AGENT_CALL_MS, signal }).catch((err) => {
          if (!alreadyDone(err)) throw err;
        });
      });
      this.state.sandboxCreated = true;
      await this.save();
    }
  }

  /** Each container in spec order, once its image (if any) is ready. */
  private async startContainers(): Promise<void> {
    const signal = this.createAbort.signal;
    for (const c of this.spec.containers) {
      signal.throwIfAborted();
      const image = this.images.get(c.name);
      if (image) await step('ContainersReady', 'ImagePrepareFailed', () => image);
      await this.containers.resume(c.name, signal);
    }
    this.deps.onChange();
    this.containers.checkAllDone();
  }

  /**
   * Starts, for every container with an image, its pull and view in the background (they run
   * while the VM boots); each ends with the view bound at <share>/<container>/rootfs. A resumed
   * sandbox asks for the digest it already had, so nothing is pulled twice.
   */
  private startImagePulls(shareDir: string, signal: AbortSignal): void {
    const images = this.deps.images;
    if (!images) return;
    for (const c of this.spec.containers) {
      if (c.image === undefined || this.images.has(c.name)) continue;
      const pinned = this.state.images?.[c.name];
      const image = pinned
        ? `${repositoryName(parseImageReference(c.image))}@${pinned.digest}`
        : c.image;
      const task = this.prepareImage(images, c.name, image, shareDir, signal);
      task.catch(() => {}); // observed by startContainers; this keeps an early abort quiet
      this.images.set(c.name, task);
    }
  }

  private async prepareImage(
    images: ContainerImages,
    name: string,
    image: string,
    shareDir: string,
    signal: AbortSignal,
  ): Promise<PreparedImage> {
    const c = this.spec.containers.find((x) => x.name === name);
    const waiting = (reason: string, message: string): void => {
      const st = this.state.containers[name];
      if (st?.started) return;
      if (CONTAINER_PROBLEM_REASONS.has(reason) && st?.message !== message)
        this.log.warn({ container: name, image, reason }, message);
      this.state.containers[name] = {
        created: false,
        started: false,
        state: 'Waiting',
        restartCount: st?.restartCount ?? 0,
        reason,
        message,
      };
      this.deps.onChange();
    };
    const prepared = await images.prepare({
      sandboxUid: this.uid,
      container: name,
      image,
      ...(c?.imagePullPolicy && { policy: c.imagePullPolicy }),
      pullSecrets: async () => {
        const refs = this.spec.imagePullSecrets ?? [];
        if (refs.length === 0 || !this.deps.pullSecrets) return [];
        let told = '';
        const read = await this.deps.pullSecrets({
          uid: this.uid,
          signal,
          // No usable projection yet: the container says why; a refusal is also an Event, once.
          onWaiting: ({ message, refused }) => {
            if (message === told) return;
            told = message;
            waiting('ContainerCreating', message);
            if (refused) this.deps.event('Warning', 'FailedToRetrieveImagePullSecret', message);
          },
        });
        for (const p of read.problems) {
          this.deps.event('Warning', 'FailedToRetrieveImagePullSecret', p);
        }
        return read.secrets;
      },
      signal,
      onWaiting: waiting,
      onEvent: (e) => this.deps.event(e.type, e.reason, `container ${name}: ${e.note}`),
    });
    const rel = rootfsTarget(name);
    const target = shareTarget(shareDir, rel);
    if (!this.state.bindMounts.includes(target)) this.state.bindMounts.push(target);
    this.state.images = {
      ...this.state.images,
      [name]: { reference: prepared.handle.reference, digest: prepared.handle.digest },
    };
    await this.save();
    // The guest may have planted a symlink at <share>/<name> by now: the target is walked
    // without following one (the bind fails instead of landing elsewhere).
    await step('ContainersReady', 'SharedDirFailed', () =>
      bindIntoShare(
        this.hostFs,
        shareDir,
        { sourceRoot: this.views.root, source: prepared.view.merged, target: rel, readOnly: false },
        signal,
      ),
    );
    this.imageConfigs.set(name, prepared.handle);
    waiting('ContainerCreating', '');
    return prepared;
  }

  /** The network a previous attempt prepared (from the state file), else a new one; recorded. */
  private async prepareNetwork(runDir: string, signal: AbortSignal): Promise<NetworkPlan> {
    const step3 = this.deps.network ?? NO_NETWORK;
    const restored = this.state.network && step3.restore(this.state.network);
    if (restored) return restored;
    const plan = await step('NetworkReady', 'NetworkFailed', () =>
      step3.prepare({ uid: this.uid, spec: this.spec, runDir, signal }),
    );
    this.state.network = plan.record;
    await this.save();
    for (const w of plan.guest.warnings) {
      const what = `${w.interface}${w.address ? ` ${w.address}` : ''}: ${w.message}`;
      this.log.warn({ warning: w }, 'network warning');
      this.deps.event('Warning', 'NetworkWarning', what);
    }
    return plan;
  }

  /** UpdateInterface per interface, then UpdateRoutes (before CreateSandbox); status from the guest. */
  private async configureGuestNetwork(signal: AbortSignal): Promise<void> {
    const plan =
      this.state.network && (this.deps.network ?? NO_NETWORK).restore(this.state.network);
    if (!plan) return;
    const client = this.client();
    await step('NetworkReady', 'GuestNetworkFailed', async () => {
      const o = { timeoutMs: AGENT_CALL_MS, signal };
      for (const i of plan.guest.interfaces) await client.updateInterface(i, o);
      await client.updateRoutes(plan.guest.routes, o);
      const [ifs, routes] = await Promise.all([client.listInterfaces(o), client.listRoutes(o)]);
      this.state.guestNetwork = guestNetworkStatus(ifs, routes);
    });
    await this.save();
    this.deps.onChange();
  }

  private client() {
    if (!this.agent)
      throw new StepError({
        condition: 'AgentConnected',
        reason: 'AgentLost',
        message: 'no agent connection',
      });
    return this.agent.client;
  }

  private async boot(runDir: string, shareDir: string, signal: AbortSignal): Promise<void> {
    const image = await step('VMReady', 'GuestImageMissing', () =>
      Promise.resolve(this.deps.guestImage()),
    );
    const kernelName = this.spec.vm?.kernel ?? 'default';
    if (kernelName !== 'default') {
      throw new StepError({
        condition: 'VMReady',
        reason: 'KernelNotFound',
        message: `spec.vm.kernel: ${JSON.stringify(kernelName)} is not a kernel this node has (only "default")`,
      });
    }
    // Below what the image needs the guest dies half-booted (out of memory unpacking or running
    // its agent): refuse it with the reason instead, before any host work for the VM.
    const shortfall = memoryShortfall(
      vmMemoryMiB(this.spec),
      (await step('VMReady', 'GuestImageMissing', () => stat(image.initrd))).size,
    );
    if (shortfall) {
      throw new StepError({ condition: 'VMReady', reason: 'MemoryTooSmall', message: shortfall });
    }
    const requested = this.spec.vm?.accelerator ?? 'auto';
    const choice = await this.deps.accelerator(
      requested === 'auto' ? this.deps.config.defaultAccelerator : requested,
    );
    const network = await this.prepareNetwork(runDir, signal);
    const files = vmFiles(runDir);
    const config = sandboxVmConfig({
      uid: this.uid,
      vm: this.spec.vm,
      accelerator: choice.accelerator,
      kernel: image.kernel,
      initrd: image.initrd,
      runDir,
      shareDir,
      nics: network.nics,
      drives: this.blockPlan?.drives ?? [],
    });
    const cgroups = await step('VMReady', 'VMCgroupFailed', () => this.createVmCgroups());
    const startedAt = new Date().toISOString();
    const booted = await step('VMReady', 'BootFailed', () =>
      this.launch({
        config,
        qemuLog: files.qemuLog,
        grpcSocket: files.grpcSocket,
        qemuBinary: this.deps.config.qemuBinary,
        deadlineMs: this.deps.config.bootTimeoutMs,
        ...(network.netnsPath && { launchPrefix: netnsLaunchPrefix(network.netnsPath) }),
        fds: { hostFs: this.hostFs, opens: this.blockPlan?.opens ?? [], cgroups },
        strategy: chooseLaunchStrategy({
          systemdScopeEnabled: this.deps.config.qemuLaunch === 'systemd-scope',
        }),
        unit: `kata-${this.uid}`,
        onCall: (rpc, code, s) =>
          this.deps.metrics.agentRpcSeconds.observe({ method: rpc, code: String(code) }, s),
        signal,
        logger: this.log,
      }),
    );
    this.qemu = booted.qemu;
    this.agent = booted.agent;
    this.state.qemu = {
      info: booted.qemu.info,
      accelerator: choice.accelerator,
      bootMillis: booted.bootMillis,
      startedAt,
      agentChannelSocket: files.agentChannelSocket,
      grpcSocket: files.grpcSocket,
    };
    this.state.agentReady = true;
    await this.save();
    this.deps.metrics.bootSeconds.observe(
      { accelerator: choice.accelerator },
      booted.bootMillis / 1000,
    );
    this.log.info(
      { pid: booted.qemu.pid, bootMillis: booted.bootMillis, accelerator: choice.accelerator },
      'VM booted',
    );
    this.watchVm();
    this.deps.onChange();
  }

  /** The VM's cgroups, limited to the guest's memory plus QEMU's own; [] when not configured. */
  private async createVmCgroups(): Promise<string[]> {
    if (!this.deps.vmCgroups) return [];
    const mib = vmMemoryMiB(this.spec) + this.deps.config.vmMemoryOverheadMiB;
    return this.deps.vmCgroups.create(this.uid, mib * 1024 * 1024);
  }

  /**
   * A step cut off because the VM died (an agent RPC failing as QEMU goes) fails for the VM's
   * reason, not the step's.
   */
  private async causeOf(failure: StepFailure): Promise<StepFailure> {
    const q = this.qemu;
    if (!q || q.running || VM_END_REASONS.has(failure.reason)) return failure;
    const status = await Promise.race([
      q.exited,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 2_000).unref()),
    ]);
    return status ? this.vmExitFailure(q, status) : failure;
  }

  /**
   * Why QEMU exited as it did: the kernel's OOM killer in its cgroup, or just the status. Every
   * container not yet ended ends with that reason.
   */
  private async vmExitFailure(q: QemuProcess, status: ExitStatus): Promise<StepFailure> {
    const how = status.signal
      ? `signal ${status.signal}`
      : status.code !== null
        ? `code ${status.code}`
        : 'unknown status';
    const failure = await this.vmExitCause(q, how);
    for (const st of Object.values(this.state.containers)) {
      if (st.state !== 'Exited') Object.assign(st, { state: 'Exited', reason: failure.reason });
    }
    return failure;
  }

  private async vmExitCause(q: QemuProcess, how: string): Promise<StepFailure> {
    const tail = await q.consoleTail(20).catch(() => [] as string[]);
    const consoleText = `console (last ${tail.length} lines):\n${tail.join('\n')}`;
    const oomKills = await this.deps.vmCgroups?.oomKills(this.uid).catch(() => undefined);
    if (oomKills) {
      const guest = vmMemoryMiB(this.spec);
      const overhead = this.deps.config.vmMemoryOverheadMiB;
      return {
        condition: 'VMReady',
        reason: 'VMOutOfMemory',
        message: `QEMU (pid ${q.pid}) was killed by the kernel's OOM killer (${how}): its cgroup's limit is ${guest + overhead} MiB (${guest} MiB guest memory + ${overhead} MiB QEMU overhead, the node agent's --vm-memory-overhead-mib); ${consoleText}`,
      };
    }
    return {
      condition: 'VMReady',
      reason: 'VMExited',
      message: `QEMU (pid ${q.pid}) exited unexpectedly (${how}); ${consoleText}`,
    };
  }

  /** Boots the VM; a drive the helper could not open beneath its root fails naming its field. */
  private async launch(opts: Parameters<typeof bootSandboxVm>[0]) {
    try {
      return await bootSandboxVm(opts);
    } catch (err) {
      throw driveOpenFailure(err, this.blockPlan) ?? err;
    }
  }

  private watchVm(): void {
    const q = this.qemu;
    if (!q) return;
    inBackground(
      'the VM exit watch',
      q.exited.then(async (status) => {
        if (this.stopping || this.qemu !== q) return;
        await this.fail(await this.vmExitFailure(q, status));
      }),
      this.log,
    );
  }

  /** Every container runs: the sandbox is Ready (once). */
  private becameReady(): void {
    if (this.state.readyAt) return;
    this.state.readyAt = new Date().toISOString();
    const created = this.sandbox.metadata.creationTimestamp;
    if (created) {
      const secs = (Date.now() - new Date(created).getTime()) / 1000;
      this.deps.metrics.createToRunningSeconds.observe(secs);
    }
    this.deps.event(
      'Normal',
      'Ready',
      `sandbox running: ${this.spec.containers.length} container(s), QEMU pid ${this.qemu?.pid ?? '?'}`,
    );
    inBackground('saving the state', this.save(), this.log);
  }

  // --- ends ---------------------------------------------------------------------------------

  private async fail(step: StepFailure): Promise<void> {
    const failure = await this.causeOf(step);
    this.log.warn({ reason: failure.reason, message: failure.message }, 'sandbox failed');
    this.deps.metrics.failures.inc({ reason: failure.reason, cause: failureCause(failure.reason) });
    this.deps.event('Warning', failure.reason, failure.message.slice(0, 1000));
    await this.end({ reason: failure.reason, message: failure.message }, failure);
  }

  private async end(
    end: { reason: string; message: string },
    failure?: StepFailure,
  ): Promise<void> {
    if (this.ended || this.stopping) return;
    this.state.end = { ...end, at: new Date().toISOString() };
    if (failure) this.state.failure = failure;
    if (this.persisted) await this.save();
    this.log.info({ reason: end.reason }, 'sandbox ended');
    this.deps.onChange();
    await this.release().catch((err: unknown) =>
      this.log.error({ err }, 'releasing the host failed'),
    );
    this.deps.onChange();
  }

  /** Stops the VM and removes mounts and run dir; the state (with the end) stays. Idempotent. */
  release(): Promise<void> {
    this.releasing ??= this.doRelease();
    return this.releasing;
  }

  private async doRelease(): Promise<void> {
    this.stopping = true;
    this.createAbort.abort();
    this.watchAbort.abort();
    await this.task?.catch(() => {});
    // A pull still running would lease an image or mount a view after the release below.
    await Promise.allSettled(this.images.values());
    if (this.agent && this.qemu?.running) {
      await this.agent.client.destroySandbox({ timeoutMs: 10_000 }).catch(() => {});
    }
    await this.stopVm();
    await this.agent?.close().catch(() => {});
    this.agent = undefined;
    await this.deps.vmCgroups?.remove(this.uid);
    await (this.deps.network ?? NO_NETWORK)
      .release(this.state.network ?? {})
      .catch((err: unknown) => {
        this.log.error({ err }, 'releasing the network failed');
        this.deps.event('Warning', 'NetworkReleaseFailed', (err as Error).message.slice(0, 1000));
      });
    if (this.state.shareDir)
      await teardownShare(this.hostFs, this.state.shareDir, this.state.bindMounts, this.log);
    // After the share: the views are bound there, and QEMU (gone now) served them.
    await this.views.teardown(this.uid).catch((err: unknown) => {
      this.log.error({ err }, 'releasing the rootfs views failed');
      this.deps.event('Warning', 'RootfsViewReleaseFailed', (err as Error).message.slice(0, 1000));
    });
    await this.deps.images?.release(this.uid).catch((err: unknown) => {
      this.log.error({ err }, 'releasing the image views failed');
      this.deps.event('Warning', 'ImageReleaseFailed', (err as Error).message.slice(0, 1000));
    });
    delete this.state.images;
    if (this.state.runDir) await rm(this.state.runDir, { recursive: true, force: true });
    Object.assign(this.state, { bindMounts: [], agentReady: false });
    delete this.state.shareDir;
    delete this.state.network;
    delete this.state.guestNetwork;
    if (this.persisted) await this.save();
  }

  private async stopVm(): Promise<void> {
    const q = this.qemu ?? (this.state.qemu && QemuProcess.adopt(this.state.qemu.info, this.log));
    if (q) {
      const outcome = await q.stop({
        powerdownGraceMs: 0,
        quitGraceMs: 3_000,
        qmpTimeoutMs: 2_000,
      });
      this.log.info({ pid: q.pid, outcome }, 'VM stopped');
    } else if (this.state.runDir) {
      await killOrphanQemu(this.state.runDir, this.log);
    }
    this.qemu = undefined;
  }

  /**
   * Deletion: SIGTERM to every container, up to the grace period, SIGKILL, RemoveContainer,
   * DestroySandbox, QEMU stopped, mounts, run dir, logs and state removed. Idempotent.
   */
  destroy(): Promise<void> {
    this.destroying ??= this.doDestroy();
    return this.destroying;
  }

  private async doDestroy(): Promise<void> {
    this.stopping = true;
    this.createAbort.abort();
    await this.task?.catch(() => {});
    await this.stopContainers().catch((err: unknown) =>
      this.log.warn({ err }, 'stopping containers failed'),
    );
    await this.release();
    await rm(sandboxLogDir(this.deps.config.logDir, this.state), { recursive: true, force: true });
    await this.saving.catch(() => {});
    this.removed = true;
    await this.deps.store.remove(this.uid);
    this.log.info('sandbox removed from the host');
  }

  private async stopContainers(): Promise<void> {
    await this.containers.stopAll();
    if (this.agent && this.qemu?.running) {
      await this.agent.client.destroySandbox({ timeoutMs: 10_000 }).catch(() => {});
    }
  }

  // --- adoption -----------------------------------------------------------------------------

  /**
   * A previous node agent's VM: adopt it when the same QEMU still runs and answers QMP and the
   * agent answers; false when it is gone (the caller reports and cleans).
   */
  async adopt(resume = true): Promise<boolean> {
    const saved = this.state.qemu;
    if (!saved) return false;
    const q = QemuProcess.adopt(saved.info, this.log);
    if (!q) return false;
    try {
      const qmp = await QmpClient.connect(saved.info.qmpSocket, { timeoutMs: 3_000 });
      try {
        await qmp.queryStatus({ timeoutMs: 3_000 });
      } finally {
        qmp.close();
      }
      this.qemu = q;
      this.agent = await AgentConnection.open(saved, (rpc, code, s) =>
        this.deps.metrics.agentRpcSeconds.observe({ method: rpc, code: String(code) }, s),
      );
      const ok = await this.agent.client.check({ waitForReady: true, timeoutMs: 20_000 });
      if (!ok) throw new Error('agent is not serving');
    } catch (err) {
      this.log.warn({ err, pid: saved.info.pid }, 'QEMU runs but cannot be adopted; stopping it');
      this.qemu = q;
      return false;
    }
    this.log.info({ pid: q.pid }, 'adopted the running VM');
    if (this.state.network) {
      await (this.deps.network ?? NO_NETWORK)
        .check(this.state.network, this.createAbort.signal)
        .catch((err: unknown) => {
          this.log.warn({ err }, 'network check of the adopted sandbox failed');
          this.deps.event('Warning', 'NetworkCheckFailed', (err as Error).message.slice(0, 1000));
        });
    }
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
    const rec = this.state.network;
    if (!rec || !this.state.guestNetwork || this.ended || this.stopping || !this.qemu?.running) {
      return;
    }
    const health = await (this.deps.network ?? NO_NETWORK).health(this.uid, rec, signal);
    if (this.ended || this.stopping) return;
    const was = this.networkLost;
    this.networkLost = health.ok ? undefined : { reason: health.reason, message: health.message };
    if (this.networkLost?.message === was?.message) return;
    if (this.networkLost && !was) {
      this.log.warn({ reason: this.networkLost.reason }, this.networkLost.message);
      this.deps.event('Warning', this.networkLost.reason, this.networkLost.message.slice(0, 1000));
    } else if (!this.networkLost) {
      this.log.info('network wiring is back');
      this.deps.event(
        'Normal',
        'NetworkRestored',
        "the VM's taps and redirects are in place again",
      );
    }
    this.deps.onChange();
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
    const pid = this.state.qemu?.info.pid;
    const consoleLog = this.state.qemu?.info.consoleLog;
    const tail = consoleLog
      ? (await readFile(consoleLog, 'utf8').catch(() => '')).split('\n').filter(Boolean).slice(-20)
      : [];
    await this.fail({
      condition: 'VMReady',
      reason: 'VMExited',
      message: `QEMU (pid ${pid ?? '?'}) exited while the node agent was away; console (last ${tail.length} lines):\n${tail.join('\n')}`,
    });
  }

  private save(): Promise<void> {
    if (this.removed) return Promise.resolve();
    this.persisted = true;
    const next = this.saving.then(() =>
      this.removed ? undefined : this.deps.store.save(this.state),
    );
    this.saving = next.catch((err: unknown) => this.log.error({ err }, 'saving state failed'));
    return next;
  }
}

/** The views root when the runtime is given none (hostPath rootfs need it without images). */
export function defaultViews(config: NodeAgentConfig, logger?: Logger): RootfsViews {
  return new RootfsViews({
    root: path.join(config.stateDir, 'rootfs-views'),
    lowerRoots: [],
    ...(logger && { logger }),
  });
}

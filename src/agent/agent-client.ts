import { randomUUID } from 'node:crypto';
import {
  credentials,
  Metadata,
  status as GrpcStatus,
  type CallOptions,
  type ChannelOptions,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  AgentServiceClient,
  AgentServiceService,
  type GuestDetailsResponse,
  type StatsContainerRequest,
  type StatsContainerResponse,
  type ReadStreamRequest,
  type ReadStreamResponse,
  type StringUser,
} from '../generated/agent.js';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../generated/health.js';
import type { Process } from '../generated/oci.js';
import type { Interface, Route } from '../generated/types.js';
import { AgentRpcError, isEndOfStream } from './errors.js';
import {
  createContainerRequest,
  createSandboxRequest,
  type ContainerSetup,
  type SandboxSetup,
} from './agent-requests.js';
import { RPC_TIMEOUT_MS, type AgentRpc } from './rpc-timeouts.js';
import { decodeStatsResponse } from './stats-wire.js';
import { sleep } from '../common/sleep.js';

export interface CallOpts {
  /** Deadline for this call; each RPC has its own default (rpc-timeouts.ts). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Queue the call until the channel connects (e.g. while the guest boots) instead of failing fast. */
  waitForReady?: boolean;
}

export interface AgentClientOptions {
  /** The unix socket the serial bridge listens on. */
  socketPath: string;
  /** Caps every RPC's default deadline (tests that must fail fast). */
  maxTimeoutMs?: number;
  /** Called once per RPC attempt with its outcome, for metrics. */
  onCall?: (rpc: string, code: GrpcStatus, seconds: number) => void;
}

type Callback<R> = (err: ServiceError | null, res: R) => void;
type UnaryFn<Q, R> = (
  req: Q,
  md: Metadata,
  opts: Partial<CallOptions>,
  cb: Callback<R>,
) => { cancel(): void };

const RETRY_BASE_MS = 50;
const RETRY_MAX_MS = 1_000;

const CHANNEL_OPTIONS: ChannelOptions = {
  // A guest that went away and came back should be found again quickly, not after minutes.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1_000,
  // Detects a half-open connection (a VM frozen or the mux stalled) while calls are in flight.
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 10_000,
  // Nothing on the node reads channelz: its per-call bookkeeping is work for nothing.
  'grpc.enable_channelz': 0,
};

/**
 * The host side of the agent protocol: one long-lived channel per sandbox (grpc-js reconnects it),
 * a deadline on every call, and retries only for calls that are safe to repeat.
 */
export class AgentClient {
  private readonly agent: AgentServiceClient;
  private readonly health: HealthClient;

  constructor(private readonly opts: AgentClientOptions) {
    const target = `unix://${opts.socketPath}`;
    this.agent = new AgentServiceClient(target, credentials.createInsecure(), CHANNEL_OPTIONS);
    this.health = new HealthClient(target, credentials.createInsecure(), {
      ...CHANNEL_OPTIONS,
      channelOverride: this.agent.getChannel(),
    });
  }

  close(): void {
    this.agent.close();
  }

  // --- health -------------------------------------------------------------------------------

  async check(opts: CallOpts = {}): Promise<boolean> {
    const res = await this.call(
      'Check',
      this.health.check.bind(this.health),
      { service: '' },
      opts,
      true,
    );
    return res.status === HealthCheckResponse_ServingStatus.SERVING;
  }

  async version(opts: CallOpts = {}): Promise<{ grpcVersion: string; agentVersion: string }> {
    return this.call('Version', this.health.version.bind(this.health), { service: '' }, opts, true);
  }

  // --- sandbox ------------------------------------------------------------------------------

  async createSandbox(setup: SandboxSetup, opts: CallOpts = {}): Promise<void> {
    const fn = this.agent.createSandbox.bind(this.agent);
    await this.call('CreateSandbox', fn, createSandboxRequest(setup), opts, false);
  }

  async destroySandbox(opts: CallOpts = {}): Promise<void> {
    await this.call('DestroySandbox', this.agent.destroySandbox.bind(this.agent), {}, opts, true);
  }

  async guestDetails(opts: CallOpts = {}): Promise<GuestDetailsResponse> {
    const req = { memBlockSize: true, memHotplugProbe: false };
    return this.call(
      'GetGuestDetails',
      this.agent.getGuestDetails.bind(this.agent),
      req,
      opts,
      true,
    );
  }

  /** The container's cgroup figures and the guest's interface counters (Kata 1.x's StatsContainer). */
  async statsContainer(containerId: string, opts: CallOpts = {}): Promise<StatsContainerResponse> {
    // Decoded through stats-wire.ts: a 1.x agent's "no limit" does not fit our 64-bit numbers.
    const def = AgentServiceService.statsContainer;
    const fn: UnaryFn<StatsContainerRequest, StatsContainerResponse> = (req, md, callOpts, cb) =>
      this.agent.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        (buf: Buffer) => decodeStatsResponse(buf),
        req,
        md,
        callOpts,
        (err, res) => cb(err, res as StatsContainerResponse),
      );
    return this.call('StatsContainer', fn, { containerId }, opts, true);
  }

  // --- network ------------------------------------------------------------------------------

  async updateInterface(iface: Interface, opts: CallOpts = {}): Promise<Interface> {
    const fn = this.agent.updateInterface.bind(this.agent);
    return this.call('UpdateInterface', fn, { interface: iface }, opts, true);
  }

  async updateRoutes(routes: Route[], opts: CallOpts = {}): Promise<Route[]> {
    const fn = this.agent.updateRoutes.bind(this.agent);
    const res = await this.call('UpdateRoutes', fn, { routes: { Routes: routes } }, opts, true);
    return res.Routes;
  }

  async listInterfaces(opts: CallOpts = {}): Promise<Interface[]> {
    const fn = this.agent.listInterfaces.bind(this.agent);
    return (await this.call('ListInterfaces', fn, {}, opts, true)).Interfaces;
  }

  async listRoutes(opts: CallOpts = {}): Promise<Route[]> {
    return (await this.call('ListRoutes', this.agent.listRoutes.bind(this.agent), {}, opts, true))
      .Routes;
  }

  // --- containers and processes ---------------------------------------------------------------

  async createContainer(setup: ContainerSetup, opts: CallOpts = {}): Promise<void> {
    const fn = this.agent.createContainer.bind(this.agent);
    await this.call('CreateContainer', fn, createContainerRequest(setup), opts, false);
  }

  async startContainer(containerId: string, opts: CallOpts = {}): Promise<void> {
    const fn = this.agent.startContainer.bind(this.agent);
    await this.call('StartContainer', fn, { containerId }, opts, false);
  }

  async removeContainer(
    containerId: string,
    timeoutSeconds: number,
    opts: CallOpts = {},
  ): Promise<void> {
    const fn = this.agent.removeContainer.bind(this.agent);
    const callOpts = {
      timeoutMs: this.timeoutOf('RemoveContainer') + timeoutSeconds * 1000,
      ...opts,
    };
    await this.call(
      'RemoveContainer',
      fn,
      { containerId, timeout: timeoutSeconds },
      callOpts,
      false,
    );
  }

  /** Starts a new process in a running container; returns its fresh exec id. */
  async execProcess(
    containerId: string,
    process: Process,
    stringUser: StringUser | undefined,
    opts: CallOpts = {},
  ): Promise<string> {
    const execId = randomUUID();
    const req = { containerId, execId, process, stringUser };
    await this.call('ExecProcess', this.agent.execProcess.bind(this.agent), req, opts, false);
    return execId;
  }

  /** An empty execId signals every process of the container. */
  async signalProcess(
    containerId: string,
    execId: string,
    signal: number,
    opts: CallOpts = {},
  ): Promise<void> {
    const fn = this.agent.signalProcess.bind(this.agent);
    await this.call('SignalProcess', fn, { containerId, execId, signal }, opts, false);
  }

  /** Blocks until the process exits; its status is 128+N for a process killed by signal N. */
  async waitProcess(containerId: string, execId: string, opts: CallOpts = {}): Promise<number> {
    const fn = this.agent.waitProcess.bind(this.agent);
    return (await this.call('WaitProcess', fn, { containerId, execId }, opts, true)).status;
  }

  async writeStdin(
    containerId: string,
    execId: string,
    data: Uint8Array,
    opts: CallOpts = {},
  ): Promise<number> {
    const fn = this.agent.writeStdin.bind(this.agent);
    return (
      await this.call(
        'WriteStdin',
        fn,
        { containerId, execId, data: Buffer.from(data) },
        opts,
        false,
      )
    ).len;
  }

  /**
   * Up to `len` bytes; an empty result is the end of the stream, which the agent says with
   * Kata 1.x's status (Unknown "EOF", contract.ts END_OF_STREAM). Any other failure throws.
   */
  async readStdout(
    containerId: string,
    execId: string,
    len: number,
    opts: CallOpts = {},
  ): Promise<Buffer> {
    const fn = this.agent.readStdout.bind(this.agent);
    return this.read('ReadStdout', fn, { containerId, execId, len }, opts);
  }

  async readStderr(
    containerId: string,
    execId: string,
    len: number,
    opts: CallOpts = {},
  ): Promise<Buffer> {
    const fn = this.agent.readStderr.bind(this.agent);
    return this.read('ReadStderr', fn, { containerId, execId, len }, opts);
  }

  private async read(
    rpc: 'ReadStdout' | 'ReadStderr',
    fn: UnaryFn<ReadStreamRequest, ReadStreamResponse>,
    req: ReadStreamRequest,
    opts: CallOpts,
  ): Promise<Buffer> {
    try {
      return (await this.call(rpc, fn, req, opts, false)).data;
    } catch (err) {
      if (isEndOfStream(err)) return Buffer.alloc(0);
      throw err;
    }
  }

  async closeStdin(containerId: string, execId: string, opts: CallOpts = {}): Promise<void> {
    const fn = this.agent.closeStdin.bind(this.agent);
    await this.call('CloseStdin', fn, { containerId, execId }, opts, true);
  }

  async ttyWinResize(
    containerId: string,
    execId: string,
    row: number,
    column: number,
    opts: CallOpts = {},
  ): Promise<void> {
    const fn = this.agent.ttyWinResize.bind(this.agent);
    await this.call('TtyWinResize', fn, { containerId, execId, row, column }, opts, true);
  }

  // --- plumbing -----------------------------------------------------------------------------

  /**
   * One RPC under one overall deadline. Calls that are safe to repeat are retried while the
   * channel is unavailable (the guest still booting or the mux reconnecting); others fail at once,
   * since the guest may have acted on a request whose answer was lost.
   */
  private timeoutOf(rpc: AgentRpc): number {
    return Math.min(RPC_TIMEOUT_MS[rpc], this.opts.maxTimeoutMs ?? Infinity);
  }

  private async call<Q, R>(
    rpc: AgentRpc,
    fn: UnaryFn<Q, R>,
    req: Q,
    opts: CallOpts,
    idempotent: boolean,
  ): Promise<R> {
    const deadline = Date.now() + (opts.timeoutMs ?? this.timeoutOf(rpc));
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.attempt(rpc, fn, req, deadline, opts);
      } catch (err) {
        const retry =
          idempotent &&
          err instanceof AgentRpcError &&
          err.code === GrpcStatus.UNAVAILABLE &&
          !opts.signal?.aborted;
        const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt);
        if (!retry || Date.now() + delay >= deadline) throw err;
        await sleep(delay, opts.signal);
      }
    }
  }

  private attempt<Q, R>(
    rpc: AgentRpc,
    fn: UnaryFn<Q, R>,
    req: Q,
    deadline: number,
    opts: CallOpts,
  ): Promise<R> {
    const started = process.hrtime.bigint();
    const observe = (code: GrpcStatus): void =>
      this.opts.onCall?.(rpc, code, Number(process.hrtime.bigint() - started) / 1e9);
    return new Promise<R>((resolve, reject) => {
      if (opts.signal?.aborted) {
        reject(
          new AgentRpcError(rpc, GrpcStatus.CANCELLED, `cancelled: ${String(opts.signal.reason)}`),
        );
        return;
      }
      const onAbort = (): void => call.cancel();
      const call = fn(
        req,
        new Metadata({ waitForReady: opts.waitForReady ?? false }),
        { deadline },
        (err, res) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (err) {
            observe(err.code);
            reject(new AgentRpcError(rpc, err.code, err.details || err.message));
          } else {
            observe(GrpcStatus.OK);
            resolve(res);
          }
        },
      );
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

// The node heartbeat on its own thread (issue 14 row 4): a worker_thread with its own event loop
// and its own API client renews the Lease, so nothing the main thread does — a CPU-bound step of
// one sandbox, a stuck await, a blocking call — can let the node's Lease expire. The main thread
// only reads the worker's status and sends it capacity changes. The worker's side is
// node-heartbeat-worker.ts; its script is the caller's own entry file (the bundle in the image),
// which dispatches on isNodeHeartbeatWorker().
import { Worker } from 'node:worker_threads';
import { inBackground } from '../common/background.js';
import type { Logger } from '../observability/logger.js';
import { createLogger } from '../observability/logger.js';
import type { NodeAllocation, NodeCapacity } from './lease.js';

/** workerData.role of the heartbeat worker. */
export const NODE_HEARTBEAT_ROLE = 'kata-node-heartbeat';

/** What the worker needs to build its own client and heartbeat (structured-cloneable). */
export interface NodeHeartbeatWorkerData {
  role: typeof NODE_HEARTBEAT_ROLE;
  /** The same kubeconfig source as the main thread's (undefined: in-cluster only). */
  kubeconfig?: string;
  nodeName: string;
  identity?: string;
  namespace?: string;
  capacity: NodeCapacity;
  /** What the node's sandboxes hold, as last sent (a restarted worker starts from it). */
  allocated?: NodeAllocation;
  /** Further annotations set at every renewal (the node's pull-secret key); fixed for the process. */
  annotations?: Record<string, string>;
  leaseDurationSeconds?: number;
  renewIntervalMs?: number;
  timeoutMs?: number;
}

/** Main → worker. */
export type ToHeartbeatWorker =
  | { type: 'capacity'; capacity: NodeCapacity }
  | { type: 'allocated'; allocated: NodeAllocation }
  | { type: 'stop' };

/** Worker → main. */
export type FromHeartbeatWorker =
  { type: 'renewed'; at: number } | { type: 'failed'; message: string } | { type: 'stopped' };

export interface NodeHeartbeatThreadOptions extends Omit<NodeHeartbeatWorkerData, 'role'> {
  /** The script the worker runs: an entry that calls runNodeHeartbeatWorker() in a worker. */
  script: URL;
  /** Before a crashed worker is started again (default 1 s). */
  restartDelayMs?: number;
  logger?: Logger;
}

export class NodeHeartbeatThread {
  private worker: Worker | undefined;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private capacity: NodeCapacity;
  private allocated: NodeAllocation | undefined;
  private readonly log: Logger;
  /** When the worker last renewed the Lease (epoch ms), 0 before the first. */
  lastRenewed = 0;
  /** The last renewal failure, cleared by a success. */
  lastError: string | undefined;
  /** How many times the worker was (re)started. */
  starts = 0;

  constructor(private readonly opts: NodeHeartbeatThreadOptions) {
    this.capacity = opts.capacity;
    this.allocated = opts.allocated;
    this.log = opts.logger ?? createLogger('node-heartbeat');
  }

  start(): void {
    if (this.worker || this.stopping) return;
    const { script, restartDelayMs: _d, logger: _l, ...rest } = this.opts;
    const workerData: NodeHeartbeatWorkerData = {
      ...rest,
      role: NODE_HEARTBEAT_ROLE,
      capacity: this.capacity,
      ...(this.allocated && { allocated: this.allocated }),
    };
    const worker = new Worker(script, { workerData, name: NODE_HEARTBEAT_ROLE });
    this.starts++;
    this.worker = worker;
    worker.on('message', (m: FromHeartbeatWorker) => {
      if (m.type === 'renewed') {
        this.lastRenewed = m.at;
        this.lastError = undefined;
      } else if (m.type === 'failed') this.lastError = m.message;
    });
    worker.on('error', (err) => this.log.error({ err }, 'heartbeat worker failed'));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = undefined;
      if (this.stopping) return;
      // The Lease must not lapse because the worker died: start another one.
      this.log.error({ code }, 'heartbeat worker exited; restarting it');
      this.restartTimer = setTimeout(() => this.start(), this.opts.restartDelayMs ?? 1_000);
    });
  }

  /**
   * Whether the Lease was renewed within `withinMs` of `now`: the node agent is not ready while
   * its heartbeat is not getting through.
   */
  renewedWithin(withinMs: number, now = Date.now()): boolean {
    return this.lastRenewed > 0 && now - this.lastRenewed < withinMs;
  }

  /** Terminates the worker as a crash would (fault injection); it is started again. */
  async kill(): Promise<void> {
    await this.worker?.terminate();
  }

  /** The capacity the next renewal advertises. */
  setCapacity(capacity: NodeCapacity): void {
    this.capacity = capacity;
    this.post({ type: 'capacity', capacity });
  }

  /** What the next renewal says the node's sandboxes hold; sent on only when it changed. */
  setAllocated(allocated: NodeAllocation): void {
    const a = this.allocated;
    if (
      a?.sandboxes === allocated.sandboxes &&
      a.memoryMiB === allocated.memoryMiB &&
      a.vcpus === allocated.vcpus &&
      JSON.stringify(a.warmReady) === JSON.stringify(allocated.warmReady)
    )
      return;
    this.allocated = allocated;
    this.post({ type: 'allocated', allocated });
  }

  /** Stops renewing (the Lease is left to expire); the worker is terminated if it lingers. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const worker = this.worker;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.post({ type: 'stop' });
    const timer = setTimeout(
      () => inBackground('terminating the heartbeat worker', worker.terminate(), this.log),
      timeoutMs,
    );
    await exited;
    clearTimeout(timer);
  }

  private post(m: ToHeartbeatWorker): void {
    this.worker?.postMessage(m);
  }
}

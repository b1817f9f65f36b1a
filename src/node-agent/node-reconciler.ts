// One reconcile per sandbox key on this node: start (or resume) its runtime, destroy it on
// deletion and then drop the finalizer, destroy the VM of a sandbox the controller declared lost,
// and apply the node agent's status fields whenever what the runtime observed changed.
import type { V1ObjectReference } from '@kubernetes/client-node';
import {
  hasEnded,
  NODE_AGENT_FIELD_MANAGER,
  NODE_CLEANUP_FINALIZER,
  type KataSandbox,
} from '../crds/index.js';
import type { EventRecorder } from '../kube/events.js';
import { removeFinalizer } from '../kube/finalizers.js';
import type { Informer } from '../kube/informer.js';
import { isNotFound, type KubeClients } from '../kube/kube-client.js';
import { objectKey, splitKey } from '../kube/object-cache.js';
import { applyStatus } from '../kube/status-patch.js';
import type { ReconcileResult } from '../kube/work-queue.js';
import type { Logger } from '../observability/logger.js';
import type { VmCgroups } from './cgroups/vm-cgroups.js';
import { cleanUnreadableState, ghost, recoveryAction, type RecoveryOutcome } from './recovery.js';
import { killOrphanQemu } from './runtime/orphan-qemu.js';
import { SandboxRuntime, type RuntimeDeps } from './runtime/sandbox-runtime.js';
import { nodeAgentConditions, nodeAgentStatus } from './runtime/sandbox-status.js';
import type { SandboxState, StateStore } from './state-store.js';

export interface NodeReconcilerDeps {
  clients: Pick<KubeClients, 'custom'>;
  sandboxes: Informer<KataSandbox>;
  events: EventRecorder;
  /** Everything a runtime needs but its status callbacks. */
  runtime: Omit<RuntimeDeps, 'onChange' | 'event'>;
  enqueue: (key: string) => void;
  log: Logger;
}

function ref(sb: KataSandbox): V1ObjectReference {
  return {
    apiVersion: sb.apiVersion,
    kind: sb.kind,
    namespace: sb.metadata.namespace,
    name: sb.metadata.name,
    uid: sb.metadata.uid,
    resourceVersion: sb.metadata.resourceVersion,
  };
}

/** Ended sandboxes are not (re)started by a node agent that did not run them. */
const isEnded = (sb: KataSandbox): boolean => hasEnded(sb.status?.phase);

export class NodeReconciler {
  readonly runtimes = new Map<string, SandboxRuntime>();
  private readonly keys = new Map<string, string>();
  private readonly applied = new Map<string, string>();

  constructor(private readonly deps: NodeReconcilerDeps) {}

  /** A runtime for a sandbox, wired to status and Events. */
  private makeRuntime(sb: KataSandbox): SandboxRuntime {
    const key = objectKey(sb);
    const rt = SandboxRuntime.fresh(this.runtimeDeps(sb, key), sb);
    this.register(key, rt);
    return rt;
  }

  private runtimeDeps(sb: KataSandbox, key: string): RuntimeDeps {
    return {
      ...this.deps.runtime,
      onChange: () => this.deps.enqueue(key),
      event: (type, reason, note) =>
        this.deps.events.record({ regarding: ref(sb), type, reason, action: 'Reconcile', note }),
    };
  }

  private register(key: string, rt: SandboxRuntime): void {
    this.runtimes.set(rt.uid, rt);
    this.keys.set(rt.uid, key);
  }

  private forget(uid: string): void {
    this.runtimes.delete(uid);
    this.keys.delete(uid);
    this.applied.delete(uid);
  }

  reconcile = async (key: string): Promise<ReconcileResult | void> => {
    const { namespace, name } = splitKey(key);
    const sb = this.deps.sandboxes.get(namespace, name);
    const uid = sb?.metadata.uid;
    // Runtimes of this key that are not the current object (gone, or deleted and recreated).
    for (const [u, k] of this.keys) {
      const rt = this.runtimes.get(u);
      if (k === key && u !== uid && rt) {
        await rt.destroy();
        this.forget(u);
      }
    }
    if (!sb || !uid) return;
    let rt = this.runtimes.get(uid);

    if (sb.metadata.deletionTimestamp) {
      if (rt) {
        rt.update(sb);
        await rt.destroy();
        this.forget(uid);
      }
      if (sb.metadata.finalizers?.includes(NODE_CLEANUP_FINALIZER)) {
        await removeFinalizer(
          this.deps.clients,
          { namespace: namespace ?? '', name },
          NODE_CLEANUP_FINALIZER,
          { current: sb },
        );
        this.deps.log.info({ namespace, name, uid }, 'host clean: finalizer removed');
      }
      return;
    }

    if (!rt) {
      if (isEnded(sb)) return;
      rt = this.makeRuntime(sb);
    } else {
      rt.update(sb);
    }
    if (sb.status?.phase === 'Failed' && !rt.ended) {
      // The controller gave up on this sandbox (e.g. NodeLost while this node was away).
      await rt.abandon(sb.status.reason || 'Failed', sb.status.message ?? '');
    }
    rt.start();
    await this.applyStatusOf(sb, rt);
  };

  /**
   * Start-up, before the first reconcile: every state file a previous node agent left is matched
   * with its sandbox and acted on (recovery.ts decides); the runtimes it keeps are this
   * reconciler's, as those it makes later. Nothing leaks, nothing starts twice.
   */
  async recover(
    sandboxes: readonly KataSandbox[],
    opts: { store: StateStore; vmCgroups?: VmCgroups },
  ): Promise<Map<string, RecoveryOutcome>> {
    const cfg = this.deps.runtime.config;
    const log = this.deps.log;
    const out = new Map<string, RecoveryOutcome>();
    for (const uid of await opts.store.listUids()) {
      let state: SandboxState | undefined;
      try {
        state = await opts.store.load(uid);
      } catch (err) {
        log.warn({ err, uid }, 'unreadable state file');
      }
      if (!state) {
        await cleanUnreadableState(uid, { config: cfg, ...opts, log });
        out.set(uid, 'orphan-cleaned');
        continue;
      }
      const sb = sandboxes.find((s) => s.metadata.uid === uid);
      const action = recoveryAction(state, sb);
      const obj = sb ?? ghost(state);
      const key = objectKey(obj);
      const rt = SandboxRuntime.restore(this.runtimeDeps(obj, key), obj, state);
      rt.log.info({ action }, 'recovering sandbox state');
      if (action === 'clean') {
        try {
          await rt.destroy();
        } catch (err) {
          // Its key's reconcile destroys it again, with back-off (a CNI DEL that keeps failing).
          rt.log.warn({ err }, 'cleaning a sandbox that is gone failed; retrying');
          this.register(key, rt);
          this.deps.enqueue(key);
        }
        out.set(uid, 'orphan-cleaned');
        continue;
      }
      this.register(key, rt);
      switch (action) {
        case 'keep-ended':
          // A release that fails here (its network) is tried again later.
          await rt.release().catch((err: unknown) => {
            rt.log.warn({ err }, 'releasing an ended sandbox failed; trying again');
            rt.releaseLater();
          });
          out.set(uid, 'ended');
          break;
        case 'deleting':
          await rt.adopt(false);
          out.set(uid, 'deleting');
          break;
        case 'abandon':
          await rt.abandon(sb?.status?.reason || 'Failed', sb?.status?.message ?? '');
          out.set(uid, 'abandoned');
          break;
        case 'adopt':
          if (await rt.adopt()) out.set(uid, 'adopted');
          else {
            await rt.reportVmGone();
            out.set(uid, 'vm-gone');
          }
          break;
        case 'restart':
          // Interrupted before its QEMU was recorded: kill a half-booted one, then create again.
          if (state.runDir) await killOrphanQemu(state.runDir, rt.log);
          rt.start();
          out.set(uid, 'resumed');
          break;
      }
    }
    return out;
  }

  /** The periodic network check of every running sandbox, one after another (cheap: ip + tc). */
  async checkNetworks(signal: AbortSignal): Promise<void> {
    for (const rt of [...this.runtimes.values()]) {
      if (signal.aborted) return;
      await rt.checkNetwork(signal).catch((err: unknown) => {
        rt.log.warn({ err }, 'network check failed');
      });
    }
  }

  /** The periodic guest sampling of every sandbox, all at once (each call has its own deadline). */
  async sampleGuests(timeoutMs: number, signal: AbortSignal): Promise<void> {
    await Promise.all(
      [...this.runtimes.values()].map((rt) =>
        rt.sampleGuest(timeoutMs, signal).catch((err: unknown) => {
          rt.log.debug({ err }, 'guest sampling failed');
        }),
      ),
    );
  }

  private async applyStatusOf(sb: KataSandbox, rt: SandboxRuntime): Promise<void> {
    const facts = rt.facts();
    const status = nodeAgentStatus(facts, sb.status?.conditions, new Date());
    // Compare without timestamps, so a lagging cache cannot make every reconcile re-apply.
    const fingerprint = JSON.stringify({
      c: nodeAgentConditions(facts),
      s: { ...status, conditions: [] },
    });
    if (this.applied.get(rt.uid) === fingerprint) return;
    try {
      await applyStatus(
        this.deps.clients,
        NODE_AGENT_FIELD_MANAGER,
        { namespace: sb.metadata.namespace ?? '', name: sb.metadata.name ?? '' },
        status,
      );
      this.applied.set(rt.uid, fingerprint);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
  }
}

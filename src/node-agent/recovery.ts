// On start, before any reconcile: every state file a previous node agent left is matched with
// its sandbox. A running VM is adopted (same QEMU, no reboot); a vanished one is reported as
// VMExited and its host cleaned; state without a sandbox is cleaned; a sandbox the controller
// failed while this node was away has its VM destroyed. Nothing leaks, nothing starts twice.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { VmCgroups } from './cgroups/vm-cgroups.js';
import type { KataSandbox } from '../crds/index.js';
import { objectKey } from '../kube/object-cache.js';
import type { Logger } from '../observability/logger.js';
import type { NodeAgentConfig } from './config.js';
import type { NodeReconciler } from './node-reconciler.js';
import { killOrphanQemu } from './runtime/orphan-qemu.js';
import { SandboxRuntime } from './runtime/sandbox-runtime.js';
import { teardownShare } from './storage/shared-dir.js';
import type { SandboxState, StateStore } from './state-store.js';

export type RecoveryOutcome =
  'adopted' | 'vm-gone' | 'orphan-cleaned' | 'ended' | 'abandoned' | 'resumed' | 'deleting';

/** What to do with one state file. Pure. */
export function recoveryAction(
  state: SandboxState,
  sb: KataSandbox | undefined,
): 'clean' | 'keep-ended' | 'deleting' | 'abandon' | 'adopt' | 'restart' {
  if (!sb) return 'clean';
  if (sb.metadata.deletionTimestamp) return 'deleting';
  if (state.end) return 'keep-ended';
  if (sb.status?.phase === 'Failed') return 'abandon';
  return state.qemu ? 'adopt' : 'restart';
}

/** A stand-in object for state whose sandbox no longer exists (only metadata is read). */
function ghost(state: SandboxState): KataSandbox {
  return {
    apiVersion: 'kata.sandbox.io/v1alpha1',
    kind: 'KataSandbox',
    metadata: { uid: state.uid, namespace: state.namespace, name: state.name },
    spec: { containers: [], terminationGracePeriodSeconds: 0 },
  } as unknown as KataSandbox;
}

export async function recoverSandboxes(opts: {
  store: StateStore;
  config: NodeAgentConfig;
  sandboxes: readonly KataSandbox[];
  reconciler: NodeReconciler;
  vmCgroups?: VmCgroups;
  log: Logger;
}): Promise<Map<string, RecoveryOutcome>> {
  const out = new Map<string, RecoveryOutcome>();
  for (const uid of await opts.store.listUids()) {
    let state: SandboxState | undefined;
    try {
      state = await opts.store.load(uid);
    } catch (err) {
      opts.log.warn({ err, uid }, 'unreadable state file');
    }
    if (!state) {
      // A directory without a readable state: clean what could be there by convention.
      const runDir = path.join(opts.config.runDir, 'sandboxes', uid);
      await killOrphanQemu(runDir, opts.log);
      await teardownShare(
        { binary: opts.config.hostFsBinary },
        path.join(opts.config.runDir, 'shared', uid),
        [],
        opts.log,
      );
      await rm(runDir, { recursive: true, force: true });
      await opts.vmCgroups?.remove(uid);
      await opts.store.remove(uid);
      out.set(uid, 'orphan-cleaned');
      continue;
    }
    const sb = opts.sandboxes.find((s) => s.metadata.uid === uid);
    const action = recoveryAction(state, sb);
    const obj = sb ?? ghost(state);
    const key = objectKey(obj);
    const rt = SandboxRuntime.restore(opts.reconciler.runtimeDeps(obj, key), obj, state);
    const log = rt.log;
    log.info({ action }, 'recovering sandbox state');
    switch (action) {
      case 'clean':
        await rt.destroy();
        out.set(uid, 'orphan-cleaned');
        break;
      case 'keep-ended':
        opts.reconciler.register(key, rt);
        await rt.release();
        out.set(uid, 'ended');
        break;
      case 'deleting':
        opts.reconciler.register(key, rt);
        await rt.adopt(false);
        out.set(uid, 'deleting');
        break;
      case 'abandon':
        opts.reconciler.register(key, rt);
        await rt.abandon(sb?.status?.reason || 'Failed', sb?.status?.message ?? '');
        out.set(uid, 'abandoned');
        break;
      case 'adopt':
        opts.reconciler.register(key, rt);
        if (await rt.adopt()) out.set(uid, 'adopted');
        else {
          await rt.reportVmGone();
          out.set(uid, 'vm-gone');
        }
        break;
      case 'restart':
        // Interrupted before its QEMU was recorded: kill a half-booted one, then create again.
        opts.reconciler.register(key, rt);
        if (state.runDir) await killOrphanQemu(state.runDir, log);
        rt.start();
        out.set(uid, 'resumed');
        break;
    }
  }
  return out;
}

// What the node reconciler's start-up (NodeReconciler.recover) does with each state file a
// previous node agent left: adopt a running VM (same QEMU, no reboot), report a vanished one as
// VMExited, clean state without a sandbox, destroy the VM of a sandbox the controller failed while
// this node was away, create again what was interrupted before its QEMU was recorded. Pure
// decisions here, and the clean-up of a directory whose state cannot be read.
import { rm } from 'node:fs/promises';
import type { VmCgroups } from './cgroups/vm-cgroups.js';
import type { KataSandbox } from '../crds/index.js';
import type { Logger } from '../observability/logger.js';
import type { NodeAgentConfig } from './config.js';
import { killOrphanQemu } from './runtime/orphan-qemu.js';
import { teardownShare } from './storage/shared-dir.js';
import type { SandboxState, StateStore } from './state-store.js';
import { sandboxDirs } from './runtime/sandbox-dirs.js';

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
export function ghost(state: SandboxState): KataSandbox {
  return {
    apiVersion: 'kata.sandbox.io/v1alpha1',
    kind: 'KataSandbox',
    metadata: { uid: state.uid, namespace: state.namespace, name: state.name },
    spec: { containers: [], terminationGracePeriodSeconds: 0 },
  } as unknown as KataSandbox;
}

/** A sandbox directory without a readable state: clean what could be there by convention. */
export async function cleanUnreadableState(
  uid: string,
  opts: { config: NodeAgentConfig; store: StateStore; vmCgroups?: VmCgroups; log: Logger },
): Promise<void> {
  const { runDir, shareDir } = sandboxDirs(opts.config.runDir, uid);
  await killOrphanQemu(runDir, opts.log);
  await teardownShare({ binary: opts.config.hostFsBinary }, shareDir, [], opts.log);
  await rm(runDir, { recursive: true, force: true });
  await opts.vmCgroups?.remove(uid);
  await opts.store.remove(uid);
}

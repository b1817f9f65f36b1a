// Which sandboxes are live, for the leak audit: named by the caller, listed from the API (every
// KataSandbox labelled for the node, ended or terminating ones included: they still own their
// objects), or, without either, read from the node agent's state files (those with no recorded
// end; an ended sandbox's objects then count as leftovers although they stay until its deletion).
import { CRD_GROUP, CRD_VERSION, NODE_LABEL, PLURAL } from '../../crds/index.js';
import type { KubeClients } from '../../kube/kube-client.js';
import { StateStore } from '../state-store.js';
import { WarmVmStore } from '../warm-pool/warm-vm-store.js';
import type { LiveSet } from './classify.js';

/** `--live-uids a,b` (empty: no sandbox is live). Pure. */
export function liveFromList(csv: string): LiveSet {
  const uids = csv
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return { source: `--live-uids (${uids.length})`, uids: new Set(uids) };
}

export async function liveFromStateFiles(stateDir: string): Promise<LiveSet> {
  const store = new StateStore(stateDir);
  const uids = new Set<string>();
  for (const uid of await store.listUids()) {
    // A broken state file cannot say the sandbox ended: count it live rather than call its
    // objects leftovers.
    const state = await store.load(uid).catch(() => ({ end: undefined }));
    if (state && !state.end) uids.add(uid);
  }
  return {
    source: `state files in ${store.root} without a recorded end (${uids.size})`,
    uids,
  };
}

interface SandboxList {
  items?: Array<{ metadata?: { uid?: string } }>;
  metadata?: { continue?: string };
}

export async function liveFromApi(clients: KubeClients, nodeName: string): Promise<LiveSet> {
  const uids = new Set<string>();
  let next: string | undefined;
  do {
    const page = (await clients.custom.listClusterCustomObject({
      group: CRD_GROUP,
      version: CRD_VERSION,
      plural: PLURAL,
      labelSelector: `${NODE_LABEL}=${nodeName}`,
      limit: 500,
      ...(next && { _continue: next }),
    })) as SandboxList;
    for (const sb of page.items ?? []) if (sb.metadata?.uid) uids.add(sb.metadata.uid);
    next = page.metadata?.continue || undefined;
  } while (next);
  return { source: `KataSandboxes of node ${nodeName} in the API (${uids.size})`, uids };
}

/**
 * The live set plus the VMs warm pools own: every warm VM with a record (the pool's until a
 * sandbox takes it), and the VM each live sandbox took from a pool (its host objects are named by
 * the VM's uid, not the sandbox's: docs/warm-pools.md).
 */
export async function withWarmVms(live: LiveSet, stateDir: string): Promise<LiveSet> {
  const uids = new Set(live.uids);
  const { records } = await new WarmVmStore(stateDir).list();
  for (const r of records) uids.add(r.vmUid);
  const store = new StateStore(stateDir);
  let taken = 0;
  for (const uid of live.uids) {
    const vmUid = (await store.load(uid).catch(() => undefined))?.warm?.vmUid;
    if (vmUid) {
      uids.add(vmUid);
      taken++;
    }
  }
  if (records.length === 0 && taken === 0) return live;
  return {
    source: `${live.source}, plus ${records.length} warm VM(s) and ${taken} VM(s) taken from warm pools`,
    uids,
  };
}

// Which sandboxes are live, for the leak audit: named by the caller, listed from the API (every
// KataSandbox labelled for the node, ended or terminating ones included: they still own their
// objects), or, without either, read from the node agent's state files (those with no recorded
// end; an ended sandbox's objects then count as leftovers although they stay until its deletion).
import { CRD_GROUP, CRD_VERSION, NODE_LABEL, PLURAL } from '../../crds/index.js';
import type { KubeClients } from '../../kube/kube-client.js';
import { StateStore } from '../state-store.js';
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

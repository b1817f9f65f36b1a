// This node's entry of a KataWarmPool's status, applied server-side under a field manager of its
// own per node, so entries of different nodes never clear each other (policy
// node-agent-warm-pools.yaml holds each node agent to its entry).
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  CRD_GROUP,
  CRD_VERSION,
  WARM_POOL_KIND,
  WARM_POOL_PLURAL,
  type WarmPoolNodeStatus,
} from '../../crds/index.js';
import { callApi, type KubeClients } from '../../kube/kube-client.js';

export function warmPoolFieldManager(nodeName: string): string {
  return `kata-node-agent-${nodeName}`.slice(0, 128);
}

/** The apply body for one node's entry. Pure. */
export function warmPoolStatusApply(pool: string, entry: WarmPoolNodeStatus) {
  return {
    apiVersion: `${CRD_GROUP}/${CRD_VERSION}`,
    kind: WARM_POOL_KIND,
    metadata: { name: pool },
    status: { nodes: [entry] },
  };
}

export async function applyWarmPoolEntry(
  clients: Pick<KubeClients, 'custom'>,
  nodeName: string,
  pool: string,
  entry: WarmPoolNodeStatus,
  signal?: AbortSignal,
): Promise<void> {
  await callApi(
    `apply warm pool ${pool}'s status entry of node ${nodeName}`,
    () =>
      clients.custom.patchClusterCustomObjectStatus(
        {
          group: CRD_GROUP,
          version: CRD_VERSION,
          plural: WARM_POOL_PLURAL,
          name: pool,
          body: warmPoolStatusApply(pool, entry),
          fieldManager: warmPoolFieldManager(nodeName),
          force: true,
        },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      ),
    { timeoutMs: 10_000, ...(signal && { signal }) },
  );
}

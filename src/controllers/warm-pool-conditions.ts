// Writes each KataWarmPool's Ready condition (the controller's only field of a pool's status;
// node agents write their own node's entry), when what it would say changed.
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  CONTROLLER_FIELD_MANAGER,
  CRD_GROUP,
  CRD_VERSION,
  WARM_POOL_KIND,
  WARM_POOL_PLURAL,
  type KataWarmPool,
} from '../crds/index.js';
import type { Informer } from '../kube/informer.js';
import { callApi, isNotFound, type KubeClients } from '../kube/kube-client.js';
import { warmPoolReady } from './warm-pool-ready.js';

export function warmPoolConditionsReconciler(
  pools: Informer<KataWarmPool>,
  clients: Pick<KubeClients, 'custom'>,
): (name: string) => Promise<void> {
  return async (name) => {
    const pool = pools.get(undefined, name);
    if (!pool || pool.metadata.deletionTimestamp) return;
    const ready = warmPoolReady(pool, new Date());
    const prev = pool.status?.conditions?.find((c) => c.type === 'Ready');
    if (
      prev &&
      prev.status === ready.status &&
      prev.reason === ready.reason &&
      prev.message === ready.message &&
      prev.observedGeneration === ready.observedGeneration
    ) {
      return;
    }
    await callApi(
      `apply the Ready condition of warm pool ${name}`,
      () =>
        clients.custom.patchClusterCustomObjectStatus(
          {
            group: CRD_GROUP,
            version: CRD_VERSION,
            plural: WARM_POOL_PLURAL,
            name,
            body: {
              apiVersion: `${CRD_GROUP}/${CRD_VERSION}`,
              kind: WARM_POOL_KIND,
              metadata: { name },
              status: { conditions: [ready] },
            },
            fieldManager: CONTROLLER_FIELD_MANAGER,
            force: true,
          },
          setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
        ),
      { timeoutMs: 10_000 },
    ).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  };
}

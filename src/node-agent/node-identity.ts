// Which node the API server says this node agent runs on: the user extra
// authentication.kubernetes.io/node-name of a token bound to a Pod on a node (SelfSubjectReview).
// Only a node agent whose credentials carry its own node name publishes a pull-secret key and
// opens projections; anything else (a token not bound to a Pod, a client certificate, another
// node's token) gets none (docs/images.md).
import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { sleep } from '../common/sleep.js';
import { callApi } from '../kube/kube-client.js';

export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';

export interface NodeIdentity {
  username: string;
  /** The node the credentials are bound to, if exactly one. */
  boundNode?: string;
}

/** The verdict for pull secrets: undefined when allowed, else why not. Pure. */
export function nodeIdentityProblem(id: NodeIdentity, nodeName: string): string | undefined {
  if (id.boundNode === nodeName) return undefined;
  return id.boundNode === undefined
    ? `the node agent's credentials (${id.username}) carry no node name (user extra ${NODE_NAME_EXTRA}: a token bound to its Pod on node ${nodeName} is needed)`
    : `the node agent's credentials (${id.username}) are bound to node ${id.boundNode}, not ${nodeName}`;
}

export function identityFrom(userInfo: {
  username?: string;
  extra?: Record<string, string[]>;
}): NodeIdentity {
  const nodes = userInfo.extra?.[NODE_NAME_EXTRA] ?? [];
  return {
    username: userInfo.username ?? '',
    ...(nodes.length === 1 && nodes[0] && { boundNode: nodes[0] }),
  };
}

export async function reviewNodeIdentity(
  kc: KubeConfig,
  signal?: AbortSignal,
): Promise<NodeIdentity> {
  const api = kc.makeApiClient(AuthenticationV1Api);
  const review = await callApi(
    'create SelfSubjectReview',
    () =>
      api.createSelfSubjectReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      }),
    { timeoutMs: 10_000, ...(signal && { signal }) },
  );
  return identityFrom(review.status?.userInfo ?? {});
}

/** reviewNodeIdentity, retried (1 s doubling to 10 s) while the API server cannot answer. */
export async function reviewNodeIdentityRetrying(
  kc: KubeConfig,
  attempts: number,
  signal?: AbortSignal,
): Promise<NodeIdentity> {
  for (let i = 1, delay = 1_000; ; i++, delay = Math.min(10_000, delay * 2)) {
    try {
      return await reviewNodeIdentity(kc, signal);
    } catch (err) {
      if (i >= attempts || signal?.aborted) throw err;
      await sleep(delay, signal);
    }
  }
}

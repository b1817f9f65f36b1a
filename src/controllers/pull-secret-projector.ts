// The effects of the projection plan (src/controllers/pull-secret-projection.ts): read the
// Secrets a sandbox names in its own namespace, seal them to its node's key and write
// kata-system/kata-pull-<uid>; delete projections; collect the ones whose sandbox is gone. The
// controller is the only component that reads tenants' pull Secrets (docs/security.md).
import type { V1Secret } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { CRD_GROUP, CRD_VERSION, PLURAL, type KataSandbox } from '../crds/index.js';
import { callApi, isAlreadyExists, isNotFound, type KubeClients } from '../kube/kube-client.js';
import {
  PROJECTION_NAMESPACE,
  projectionName,
  projectionSecret,
  pullSecretFrom,
  type NodeKey,
  type ProjectionPayload,
  type ProjectionView,
} from '../kube/pull-secret-projection.js';
import type { Logger } from '../observability/logger.js';
import type { ProjectionWhy } from './pull-secret-projection.js';

const CALL_MS = 10_000;

/** Reads the named Secrets of `namespace`, in the spec's order; an unusable one is a problem line. */
export async function readReferencedSecrets(
  clients: Pick<KubeClients, 'core'>,
  namespace: string,
  refs: readonly { name: string }[],
  signal?: AbortSignal,
): Promise<ProjectionPayload> {
  const out: ProjectionPayload = { secrets: [], problems: [] };
  for (const [i, ref] of refs.entries()) {
    const field = `spec.imagePullSecrets[${i}]`;
    try {
      const secret = await callApi(
        `get Secret ${namespace}/${ref.name}`,
        () => clients.core.readNamespacedSecret({ name: ref.name, namespace }),
        { timeoutMs: CALL_MS, ...(signal && { signal }) },
      );
      const parsed = pullSecretFrom(field, secret);
      if (typeof parsed === 'string') out.problems.push(parsed);
      else out.secrets.push(parsed);
    } catch (err) {
      if (signal?.aborted) throw err;
      out.problems.push(
        isNotFound(err)
          ? `${field}: Secret ${namespace}/${ref.name} not found`
          : `${field}: ${(err as Error).message}`,
      );
    }
  }
  return out;
}

export interface ProjectorDeps {
  clients: Pick<KubeClients, 'core' | 'custom'>;
  log: Logger;
}

export class PullSecretProjector {
  /** What was last written per sandbox uid (node, key, payload digest): a refresh that finds the
   * same content writes nothing. Lost on restart, which costs one rewrite per sandbox. */
  private readonly written = new Map<string, string>();

  constructor(private readonly deps: ProjectorDeps) {}

  async project(
    sb: KataSandbox,
    node: string,
    key: NodeKey,
    why: ProjectionWhy,
    signal: AbortSignal,
  ): Promise<void> {
    const uid = sb.metadata.uid ?? '';
    const namespace = sb.metadata.namespace ?? '';
    const payload = await readReferencedSecrets(
      this.deps.clients,
      namespace,
      sb.spec.imagePullSecrets ?? [],
      signal,
    );
    const digest = `${node}\0${key.fingerprint}\0${createHash('sha256')
      .update(JSON.stringify(payload))
      .digest('hex')}`;
    const unchanged = this.written.get(uid) === digest;
    if (why === 'refresh' && unchanged) return;
    const body = projectionSecret(
      { namespace, name: sb.metadata.name ?? '', uid, node },
      payload,
      key,
    );
    // 'missing' with the content this process wrote: most likely the cache has not shown the
    // write yet, so an existing projection is left as it is (a deleted one is made again).
    const written = await this.write(body, unchanged, signal);
    if (!written) return;
    this.written.set(uid, digest);
    this.deps.log.info(
      {
        namespace,
        name: sb.metadata.name,
        uid,
        node,
        key: key.fingerprint,
        why,
        secrets: payload.secrets.length,
        problems: payload.problems.length,
      },
      'projected imagePullSecrets',
    );
  }

  /** Creates, else replaces (unless `keepExisting`); whether it wrote. */
  private async write(
    body: V1Secret,
    keepExisting: boolean,
    signal: AbortSignal,
  ): Promise<boolean> {
    const api = this.deps.clients.core;
    const name = body.metadata?.name ?? '';
    const call = { signal, timeoutMs: CALL_MS };
    try {
      await callApi(
        `create Secret ${PROJECTION_NAMESPACE}/${name}`,
        () => api.createNamespacedSecret({ namespace: PROJECTION_NAMESPACE, body }),
        call,
      );
      return true;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    if (keepExisting) return false;
    const current = await callApi(
      `get Secret ${PROJECTION_NAMESPACE}/${name}`,
      () => api.readNamespacedSecret({ namespace: PROJECTION_NAMESPACE, name }),
      call,
    );
    // resourceVersion kept: a concurrent write makes this fail with 409 and the key is retried.
    const replaced = {
      ...body,
      metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion },
    };
    await callApi(
      `replace Secret ${PROJECTION_NAMESPACE}/${name}`,
      () => api.replaceNamespacedSecret({ namespace: PROJECTION_NAMESPACE, name, body: replaced }),
      call,
    );
    return true;
  }

  /** Deletes the projection of sandbox `uid`; already gone is fine. */
  async remove(uid: string, why: string, signal: AbortSignal): Promise<void> {
    const name = projectionName(uid);
    this.written.delete(uid);
    try {
      await callApi(
        `delete Secret ${PROJECTION_NAMESPACE}/${name}`,
        () =>
          this.deps.clients.core.deleteNamespacedSecret({ namespace: PROJECTION_NAMESPACE, name }),
        { signal, timeoutMs: CALL_MS },
      );
      this.deps.log.info({ uid, why }, 'deleted imagePullSecrets projection');
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  private async exists(
    p: ProjectionView,
    signal: AbortSignal,
    api = { group: CRD_GROUP, version: CRD_VERSION, plural: PLURAL },
  ): Promise<boolean> {
    try {
      const sb = (await callApi(
        `get KataSandbox ${p.namespace}/${p.name}`,
        () =>
          this.deps.clients.custom.getNamespacedCustomObject({
            ...api,
            namespace: p.namespace,
            name: p.name,
          }),
        { signal, timeoutMs: CALL_MS },
      )) as KataSandbox;
      return sb.metadata.uid === p.uid;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Deletes the candidates (from orphanedProjections) whose sandbox the API server confirms is
   * gone (not found, or a new object under the same name), so a lagging cache deletes nothing
   * still in use. Returns the uids deleted.
   */
  async collect(candidates: readonly ProjectionView[], signal: AbortSignal): Promise<string[]> {
    const deleted: string[] = [];
    for (const p of candidates) {
      // A projection without its sandbox's namespace and name cannot be matched: it goes.
      const alive = p.namespace !== '' && p.name !== '' && (await this.exists(p, signal));
      if (alive) continue;
      await this.remove(p.uid, 'its sandbox no longer exists', signal);
      deleted.push(p.uid);
    }
    return deleted;
  }
}

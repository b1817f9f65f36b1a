// A sandbox's imagePullSecrets, read for one pull: only the Secrets its spec names, only in its
// namespace, only of the two registry-credential types. A missing or unusable Secret is reported
// (an Event naming the field) and skipped, as kubelet does: the pull then goes on without it and
// fails with the registry's own refusal if the registry wanted credentials.
import type { V1Secret } from '@kubernetes/client-node';
import { callApi, isNotFound, type KubeClients } from '../kube/kube-client.js';
import { type PullSecret, withUsableRegistryKeys } from './images/registry-auth.js';

export const DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';
export const DOCKER_CFG = 'kubernetes.io/dockercfg';

export interface PullSecretsRead {
  secrets: PullSecret[];
  /** One line per Secret that could not be used, naming its field. */
  problems: string[];
}

/** The credentials of one Secret, or why it cannot be used. Pure. */
export function pullSecretFrom(field: string, secret: V1Secret): PullSecret | string {
  const name = secret.metadata?.name ?? '';
  const key =
    secret.type === DOCKER_CONFIG_JSON
      ? '.dockerconfigjson'
      : secret.type === DOCKER_CFG
        ? '.dockercfg'
        : undefined;
  if (!key) {
    return `${field}: Secret ${JSON.stringify(name)} has type ${JSON.stringify(secret.type ?? '')}, not ${DOCKER_CONFIG_JSON}`;
  }
  const raw = secret.data?.[key];
  if (raw === undefined) return `${field}: Secret ${JSON.stringify(name)} has no ${key} key`;
  try {
    return { name, data: JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) as unknown };
  } catch (err) {
    return `${field}: Secret ${JSON.stringify(name)} ${key} is not JSON: ${(err as Error).message}`;
  }
}

/** Reads the named Secrets of `namespace`, in the spec's order. */
export async function readPullSecrets(
  clients: Pick<KubeClients, 'core'>,
  namespace: string,
  refs: readonly { name: string }[],
  signal?: AbortSignal,
): Promise<PullSecretsRead> {
  const out: PullSecretsRead = { secrets: [], problems: [] };
  for (const [i, ref] of refs.entries()) {
    const field = `spec.imagePullSecrets[${i}]`;
    try {
      const secret = await callApi(
        `get Secret ${namespace}/${ref.name}`,
        () => clients.core.readNamespacedSecret({ name: ref.name, namespace }),
        { timeoutMs: 10_000, ...(signal && { signal }) },
      );
      const parsed = pullSecretFrom(field, secret);
      if (typeof parsed === 'string') out.problems.push(parsed);
      else {
        // Keys over the matcher's limits are dropped here, each reported like a bad Secret.
        const usable = withUsableRegistryKeys(field, parsed);
        out.problems.push(...usable.problems);
        out.secrets.push(usable.secret);
      }
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

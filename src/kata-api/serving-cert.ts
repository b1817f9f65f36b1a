// kata-api's serving certificate without a certificate manager: the first replica to start makes
// a self-signed one for the Service's names and stores it in a Secret (create is atomic: a replica
// that loses the race reads the winner's), and every replica makes the APIService trust exactly
// that certificate (spec.caBundle). Certificate files given by flag replace all of this.
import {
  ApiregistrationV1Api,
  type KubeConfig,
  type V1APIService,
  type V1Secret,
} from '@kubernetes/client-node';
import type { KubeClients } from '../kube/kube-client.js';
import { callApi, isAlreadyExists, isConflict, isNotFound } from '../kube/kube-client.js';
import { KATA_SYSTEM_NAMESPACE } from '../kube/lease.js';
import type { Logger } from '../observability/logger.js';
import { selfSignedCertificate, type CertificatePair } from '../observability/self-signed-cert.js';
import { SUBRESOURCE_GROUP, SUBRESOURCE_VERSION } from '../subresources/contract.js';

export const SERVING_SECRET = 'kata-api-serving-cert';
export const API_SERVICE_NAME = `${SUBRESOURCE_VERSION}.${SUBRESOURCE_GROUP}`;
/** The names the aggregator may dial: it checks the certificate against <service>.<ns>.svc. */
export const SERVICE_HOSTS = [
  `kata-api.${KATA_SYSTEM_NAMESPACE}.svc`,
  `kata-api.${KATA_SYSTEM_NAMESPACE}.svc.cluster.local`,
];

function pairOf(s: V1Secret): CertificatePair | undefined {
  const cert = s.data?.['tls.crt'];
  const key = s.data?.['tls.key'];
  if (!cert || !key) return undefined;
  return {
    certPem: Buffer.from(cert, 'base64').toString('utf8'),
    keyPem: Buffer.from(key, 'base64').toString('utf8'),
  };
}

async function readSecret(clients: KubeClients): Promise<CertificatePair | undefined> {
  try {
    const s = await callApi('get serving Secret', () =>
      clients.core.readNamespacedSecret({ namespace: KATA_SYSTEM_NAMESPACE, name: SERVING_SECRET }),
    );
    return pairOf(s);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export async function ensureServingSecret(clients: KubeClients): Promise<CertificatePair> {
  const existing = await readSecret(clients);
  if (existing) return existing;
  const made = selfSignedCertificate({
    commonName: 'kata-api',
    hosts: SERVICE_HOSTS,
    validDays: 3650,
  });
  try {
    await callApi('create serving Secret', () =>
      clients.core.createNamespacedSecret({
        namespace: KATA_SYSTEM_NAMESPACE,
        body: {
          metadata: { name: SERVING_SECRET, labels: { 'app.kubernetes.io/name': 'kata-api' } },
          type: 'kubernetes.io/tls',
          data: {
            'tls.crt': Buffer.from(made.certPem).toString('base64'),
            'tls.key': Buffer.from(made.keyPem).toString('base64'),
          },
        },
      }),
    );
    return made;
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    const winner = await readSecret(clients);
    if (!winner) throw new Error(`Secret ${SERVING_SECRET} exists but holds no tls.crt/tls.key`);
    return winner;
  }
}

/** Sets the APIService's caBundle to `certPem` unless it is already; retried on a conflict. */
export async function trustInApiService(
  kc: KubeConfig,
  certPem: string,
  log: Logger,
): Promise<void> {
  const api = kc.makeApiClient(ApiregistrationV1Api);
  const want = Buffer.from(certPem).toString('base64');
  for (let attempt = 0; attempt < 5; attempt++) {
    let svc: V1APIService;
    try {
      svc = await callApi('get APIService', () => api.readAPIService({ name: API_SERVICE_NAME }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      log.warn(
        { apiService: API_SERVICE_NAME },
        'APIService not found: nothing routes to kata-api',
      );
      return;
    }
    if (svc.spec?.caBundle === want) return;
    if (svc.spec) svc.spec.caBundle = want;
    try {
      await callApi('update APIService', () =>
        api.replaceAPIService({ name: API_SERVICE_NAME, body: svc }),
      );
      log.info({ apiService: API_SERVICE_NAME }, 'APIService trusts the serving certificate');
      return;
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
  }
  throw new Error(`update APIService ${API_SERVICE_NAME}: kept conflicting`);
}

// The pull-secret projection: how the controller hands a sandbox's imagePullSecrets to the node
// agent of the sandbox's node, and nobody else. One Secret kata-system/kata-pull-<sandbox uid>
// holds the docker configs the sandbox names, sealed (src/crypto/sealed-box.ts) to the X25519 key
// the node agent publishes on its Lease, bound to the sandbox uid and the node name; plus the
// references that could not be used, so the node agent still reports each one. Names, labels,
// the payload and its (un)sealing live here, shared by both sides. Pure (but for randomness).
import type { V1Lease, V1Secret } from '@kubernetes/client-node';
import type { KeyObject } from 'node:crypto';
import { SYSTEM_NAMESPACE } from '../crds/constants.js';
import {
  decodePublicKey,
  keyFingerprint,
  open,
  seal,
  SealedBoxError,
  type X25519KeyPair,
} from '../crypto/sealed-box.js';

export { SealedBoxError };

/** Where projections live: the operator's namespace. */
export const PROJECTION_NAMESPACE = SYSTEM_NAMESPACE;
export const PROJECTION_PREFIX = 'kata-pull-';
/** Node agent Lease annotations: its X25519 public key (base64url) and the key's fingerprint. */
export const NODE_KEY_ANNOTATION = 'kata.sandbox.io/pull-secret-key';
export const NODE_KEY_FINGERPRINT_ANNOTATION = 'kata.sandbox.io/pull-secret-key-fingerprint';
/** Labels of a projection Secret. */
export const PROJECTION_LABEL = 'kata.sandbox.io/pull-secret-projection';
export const PROJECTION_NODE_LABEL = 'kata.sandbox.io/node';
export const PROJECTION_UID_LABEL = 'kata.sandbox.io/sandbox-uid';
export const PROJECTION_NAMESPACE_LABEL = 'kata.sandbox.io/sandbox-namespace';
/** Annotations of a projection Secret. */
export const PROJECTION_NAME_ANNOTATION = 'kata.sandbox.io/sandbox-name';
export const PROJECTION_FINGERPRINT_ANNOTATION = 'kata.sandbox.io/sealed-for-key';
/** The data key holding the sealed payload. */
export const SEALED_KEY = 'sealed';

export const DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';
export const DOCKER_CFG = 'kubernetes.io/dockercfg';

export function projectionName(uid: string): string {
  return `${PROJECTION_PREFIX}${uid}`;
}

/** One referenced Secret's docker config (the shape registry-auth.ts matches against). */
export interface ProjectedSecret {
  name: string;
  data: unknown;
}

/** What is sealed: the usable Secrets in the spec's order, and one line per unusable one. */
export interface ProjectionPayload {
  secrets: ProjectedSecret[];
  problems: string[];
}

/** Who a projection is for: sealing and opening must agree on both. */
export interface ProjectionTarget {
  node: string;
  uid: string;
}

export interface NodeKey {
  publicKey: KeyObject;
  /** As published (base64url), so a change is seen without re-encoding. */
  encoded: string;
  fingerprint: string;
}

/** The associated data: a ciphertext for one sandbox on one node opens for nothing else. */
export function projectionContext(t: ProjectionTarget): Buffer {
  return Buffer.from(`kata.sandbox.io/pull-secrets/v1\0node=${t.node}\0uid=${t.uid}`);
}

/** The annotations a node agent publishes for its key. */
export function nodeKeyAnnotations(key: NodeKey): Record<string, string> {
  return {
    [NODE_KEY_ANNOTATION]: key.encoded,
    [NODE_KEY_FINGERPRINT_ANNOTATION]: key.fingerprint,
  };
}

export function nodeKeyOf(publicKey: KeyObject, encoded: string): NodeKey {
  return { publicKey, encoded, fingerprint: keyFingerprint(publicKey) };
}

/** The key a node agent's Lease publishes; undefined when absent, malformed or mismatched. */
export function leaseNodeKey(lease: V1Lease): NodeKey | undefined {
  const a = lease.metadata?.annotations ?? {};
  const encoded = a[NODE_KEY_ANNOTATION];
  if (!encoded) return undefined;
  try {
    const key = nodeKeyOf(decodePublicKey(encoded), encoded);
    return key.fingerprint === a[NODE_KEY_FINGERPRINT_ANNOTATION] ? key : undefined;
  } catch {
    return undefined;
  }
}

/** The credentials of one referenced Secret, or why it cannot be used (naming the field). */
export function pullSecretFrom(field: string, secret: V1Secret): ProjectedSecret | string {
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

export interface ProjectionSource {
  namespace: string;
  name: string;
  uid: string;
  node: string;
}

/** The projection Secret for a sandbox, its payload sealed to `key`. */
export function projectionSecret(
  src: ProjectionSource,
  payload: ProjectionPayload,
  key: NodeKey,
): V1Secret {
  const sealed = seal(
    Buffer.from(JSON.stringify(payload)),
    key.publicKey,
    projectionContext({ node: src.node, uid: src.uid }),
  );
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: projectionName(src.uid),
      namespace: PROJECTION_NAMESPACE,
      labels: {
        [PROJECTION_LABEL]: 'true',
        [PROJECTION_NODE_LABEL]: src.node,
        [PROJECTION_UID_LABEL]: src.uid,
        [PROJECTION_NAMESPACE_LABEL]: src.namespace,
      },
      annotations: {
        [PROJECTION_NAME_ANNOTATION]: src.name,
        [PROJECTION_FINGERPRINT_ANNOTATION]: key.fingerprint,
      },
    },
    data: { [SEALED_KEY]: sealed.toString('base64') },
  };
}

/** What the controller needs to know of an existing projection (from its labels). */
export interface ProjectionView {
  node: string;
  uid: string;
  namespace: string;
  name: string;
  fingerprint: string;
}

export function projectionView(secret: V1Secret): ProjectionView | undefined {
  const l = secret.metadata?.labels ?? {};
  const a = secret.metadata?.annotations ?? {};
  const uid = l[PROJECTION_UID_LABEL];
  if (!uid || secret.metadata?.name !== projectionName(uid)) return undefined;
  return {
    node: l[PROJECTION_NODE_LABEL] ?? '',
    uid,
    namespace: l[PROJECTION_NAMESPACE_LABEL] ?? '',
    name: a[PROJECTION_NAME_ANNOTATION] ?? '',
    fingerprint: a[PROJECTION_FINGERPRINT_ANNOTATION] ?? '',
  };
}

export class ProjectionError extends Error {
  override readonly name = 'ProjectionError';
}

/**
 * The payload of a projection addressed to `target`, opened with the node's key pair. A
 * projection for another node or sandbox, or sealed to another key, is refused (the AEAD fails
 * even if someone rewrote the labels).
 */
export function openProjection(
  secret: V1Secret,
  target: ProjectionTarget,
  keys: X25519KeyPair,
): ProjectionPayload {
  const raw = secret.data?.[SEALED_KEY];
  if (!raw) throw new ProjectionError(`projection has no ${SEALED_KEY} key`);
  let plain: Buffer;
  try {
    plain = open(Buffer.from(raw, 'base64'), keys, projectionContext(target));
  } catch (err) {
    throw new ProjectionError(
      `projection ${secret.metadata?.name ?? ''} is not for sandbox ${target.uid} on node ${target.node} under this node's key: ${(err as Error).message}`,
    );
  }
  const parsed = JSON.parse(plain.toString('utf8')) as Partial<ProjectionPayload>;
  return {
    secrets: Array.isArray(parsed.secrets) ? parsed.secrets : [],
    problems: Array.isArray(parsed.problems) ? parsed.problems.map(String) : [],
  };
}

import { describe, expect, it } from '@jest/globals';
import type { V1Lease } from '@kubernetes/client-node';
import { encodePublicKey, generateX25519KeyPair } from '../../../src/crypto/sealed-box.js';
import {
  leaseNodeKey,
  NODE_KEY_ANNOTATION,
  nodeKeyAnnotations,
  nodeKeyOf,
  openProjection,
  PROJECTION_NODE_LABEL,
  projectionSecret,
  projectionView,
  ProjectionError,
  SEALED_KEY,
  type ProjectionPayload,
} from '../../../src/kube/pull-secret-projection.js';

const pair = () => {
  const keys = generateX25519KeyPair();
  return { keys, published: nodeKeyOf(keys.publicKey, encodePublicKey(keys.publicKey)) };
};
const src = { namespace: 'team', name: 'web', uid: 'uid-1', node: 'a' };
const payload: ProjectionPayload = {
  secrets: [{ name: 'regcred', data: { auths: { 'reg:5000': { auth: 'dTpw' } } } }],
  problems: ['spec.imagePullSecrets[1]: Secret team/gone not found'],
};

describe('pull-secret projection', () => {
  it('is one Opaque Secret kata-system/kata-pull-<uid>, labelled, holding only ciphertext', () => {
    const node = pair();
    const s = projectionSecret(src, payload, node.published);
    expect(s.type).toBe('Opaque');
    expect(s.metadata).toMatchObject({
      name: 'kata-pull-uid-1',
      namespace: 'kata-system',
      labels: {
        'kata.sandbox.io/pull-secret-projection': 'true',
        'kata.sandbox.io/node': 'a',
        'kata.sandbox.io/sandbox-uid': 'uid-1',
        'kata.sandbox.io/sandbox-namespace': 'team',
      },
      annotations: {
        'kata.sandbox.io/sandbox-name': 'web',
        'kata.sandbox.io/sealed-for-key': node.published.fingerprint,
      },
    });
    expect(Object.keys(s.data ?? {})).toEqual([SEALED_KEY]);
    expect(Buffer.from(s.data![SEALED_KEY]!, 'base64').toString('latin1')).not.toContain('dTpw');
    expect(projectionView(s)).toEqual({
      node: 'a',
      uid: 'uid-1',
      namespace: 'team',
      name: 'web',
      fingerprint: node.published.fingerprint,
    });
  });

  it("opens for its node's key, sandbox and node; refuses any other (the AEAD binds them)", () => {
    const node = pair();
    const s = projectionSecret(src, payload, node.published);
    expect(openProjection(s, { node: 'a', uid: 'uid-1' }, node.keys)).toEqual(payload);
    // Relabelled for node b, or replayed for another sandbox: still sealed to (a, uid-1).
    expect(() => openProjection(s, { node: 'b', uid: 'uid-1' }, node.keys)).toThrow(
      ProjectionError,
    );
    expect(() => openProjection(s, { node: 'a', uid: 'uid-2' }, node.keys)).toThrow(
      /not for sandbox uid-2 on node a/,
    );
    expect(() => openProjection(s, { node: 'a', uid: 'uid-1' }, pair().keys)).toThrow(
      /authentication failed/,
    );
    const relabelled = {
      ...s,
      metadata: { ...s.metadata, labels: { ...s.metadata!.labels, [PROJECTION_NODE_LABEL]: 'b' } },
    };
    expect(() => openProjection(relabelled, { node: 'b', uid: 'uid-1' }, node.keys)).toThrow(
      ProjectionError,
    );
    expect(() => openProjection({ data: {} }, { node: 'a', uid: 'uid-1' }, node.keys)).toThrow(
      /no sealed key/,
    );
  });

  it("reads a node's key from its Lease only when key and fingerprint agree", () => {
    const node = pair();
    const lease = (annotations: Record<string, string>): V1Lease => ({
      metadata: { name: 'kata-node-a', annotations },
    });
    const key = leaseNodeKey(lease(nodeKeyAnnotations(node.published)));
    expect(key?.fingerprint).toBe(node.published.fingerprint);
    expect(key?.encoded).toBe(node.published.encoded);
    expect(leaseNodeKey(lease({}))).toBeUndefined();
    expect(
      leaseNodeKey(
        lease({
          ...nodeKeyAnnotations(node.published),
          [NODE_KEY_ANNOTATION]: pair().published.encoded,
        }),
      ),
    ).toBeUndefined();
    expect(
      leaseNodeKey(lease({ ...nodeKeyAnnotations(node.published), [NODE_KEY_ANNOTATION]: 'x' })),
    ).toBeUndefined();
  });
});

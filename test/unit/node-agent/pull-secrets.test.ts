import { describe, expect, it } from '@jest/globals';
import { ApiException, type V1Secret } from '@kubernetes/client-node';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readReferencedSecrets } from '../../../src/controllers/pull-secret-projector.js';
import { encodePublicKey, generateX25519KeyPair } from '../../../src/crypto/sealed-box.js';
import type { KubeClients } from '../../../src/kube/kube-client.js';
import {
  nodeKeyOf,
  projectionSecret,
  pullSecretFrom,
} from '../../../src/kube/pull-secret-projection.js';
import {
  identityFrom,
  NODE_NAME_EXTRA,
  nodeIdentityProblem,
} from '../../../src/node-agent/node-identity.js';
import {
  loadOrCreateNodeKey,
  NODE_KEY_FILE,
} from '../../../src/node-agent/images/pull-secret-key.js';
import {
  judgeProjection,
  ProjectedPullSecrets,
  usableKeys,
  type NodeKeys,
} from '../../../src/node-agent/images/pull-secrets.js';

const notFound = () => new ApiException(404, 'not found', '{"reason":"NotFound"}', {});
const b64 = (o: unknown) =>
  Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64');

describe('pullSecretFrom', () => {
  it('decodes .dockerconfigjson and legacy .dockercfg', () => {
    const auths = { auths: { 'reg:5000': { auth: b64('u:p') } } };
    expect(
      pullSecretFrom('spec.imagePullSecrets[0]', {
        metadata: { name: 'cred' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': b64(auths) },
      }),
    ).toEqual({ name: 'cred', data: auths });
    expect(
      pullSecretFrom('f', {
        metadata: { name: 'old' },
        type: 'kubernetes.io/dockercfg',
        data: { '.dockercfg': b64({ 'reg:5000': { auth: b64('u:p') } }) },
      }),
    ).toEqual({ name: 'old', data: { 'reg:5000': { auth: b64('u:p') } } });
  });

  it('names the field and what is wrong with an unusable Secret', () => {
    const s = (x: Partial<V1Secret>): V1Secret => ({ metadata: { name: 'x' }, ...x });
    expect(pullSecretFrom('spec.imagePullSecrets[1]', s({ type: 'Opaque', data: {} }))).toBe(
      'spec.imagePullSecrets[1]: Secret "x" has type "Opaque", not kubernetes.io/dockerconfigjson',
    );
    expect(pullSecretFrom('f', s({ type: 'kubernetes.io/dockerconfigjson', data: {} }))).toBe(
      'f: Secret "x" has no .dockerconfigjson key',
    );
    expect(
      pullSecretFrom(
        'f',
        s({ type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('{nope') } }),
      ),
    ).toMatch(/^f: Secret "x" .dockerconfigjson is not JSON: /);
  });
});

describe('readReferencedSecrets (the controller reads what a sandbox names)', () => {
  it('reads in the spec order from the sandbox namespace and names each unusable reference', async () => {
    const store: Record<string, V1Secret> = {
      'team/good': {
        metadata: { name: 'good' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': b64({ auths: {} }) },
      },
      'team/opaque': { metadata: { name: 'opaque' }, type: 'Opaque', data: {} },
    };
    const asked: string[] = [];
    const core = {
      readNamespacedSecret: async ({ name, namespace }: { name: string; namespace: string }) => {
        asked.push(`${namespace}/${name}`);
        const s = store[`${namespace}/${name}`];
        if (!s) throw notFound();
        return s;
      },
    } as unknown as KubeClients['core'];
    const out = await readReferencedSecrets({ core }, 'team', [
      { name: 'missing' },
      { name: 'good' },
      { name: 'opaque' },
    ]);
    expect(asked).toEqual(['team/missing', 'team/good', 'team/opaque']);
    expect(out.secrets).toEqual([{ name: 'good', data: { auths: {} } }]);
    expect(out.problems).toEqual([
      'spec.imagePullSecrets[0]: Secret team/missing not found',
      'spec.imagePullSecrets[2]: Secret "opaque" has type "Opaque", not kubernetes.io/dockerconfigjson',
    ]);
  });
});

describe('the node agent and the projection', () => {
  const keys = generateX25519KeyPair();
  const published = nodeKeyOf(keys.publicKey, encodePublicKey(keys.publicKey));
  const node: NodeKeys = { keys, fingerprint: published.fingerprint };
  const target = { node: 'a', uid: 'u1' };
  const payload = {
    secrets: [{ name: 'regcred', data: { auths: { 'reg:5000': { auth: b64('u:p') } } } }],
    problems: ['spec.imagePullSecrets[1]: Secret team/gone not found'],
  };
  const projection = (node = 'a', key = published) =>
    projectionSecret({ namespace: 'team', name: 'web', uid: 'u1', node }, payload, key);

  it('opens its own projection: the Secrets and the problems, as the controller sealed them', () => {
    expect(judgeProjection(projection(), target, node)).toEqual({ payload });
  });

  it('waits while there is none, or while it is for another node or an older key', () => {
    expect(judgeProjection(undefined, target, node)).toEqual({
      wait: {
        message:
          'waiting for the controller to hand over the imagePullSecrets (Secret kata-system/kata-pull-u1)',
        refused: false,
      },
    });
    expect(judgeProjection(projection('b'), target, node)).toMatchObject({
      wait: { message: expect.stringContaining('is for node "b"'), refused: false },
    });
    const old = generateX25519KeyPair();
    const oldKey = nodeKeyOf(old.publicKey, encodePublicKey(old.publicKey));
    expect(judgeProjection(projection('a', oldKey), target, node)).toMatchObject({
      wait: {
        message: expect.stringContaining(
          `sealed for key ${oldKey.fingerprint}, this node's key is ${published.fingerprint}`,
        ),
        refused: false,
      },
    });
  });

  it('refuses a projection that does not open (sealed for another sandbox or node, or forged)', () => {
    // Labels and key fingerprint say "yours", the ciphertext was sealed for sandbox u2.
    const forged = projectionSecret(
      { namespace: 'team', name: 'web', uid: 'u2', node: 'a' },
      payload,
      published,
    );
    forged.metadata = projection().metadata;
    expect(judgeProjection(forged, target, node)).toMatchObject({
      wait: { message: expect.stringContaining('authentication failed'), refused: true },
    });
  });

  it('refuses everything without a node identity', () => {
    expect(judgeProjection(projection(), target, { refused: 'no node name' })).toEqual({
      wait: {
        message: 'imagePullSecrets cannot be used on this node: no node name',
        refused: true,
      },
    });
  });

  it('polls until the projection appears, telling the container why it waits', async () => {
    let reads = 0;
    const core = {
      readNamespacedSecret: async ({ name, namespace }: { name: string; namespace: string }) => {
        expect(`${namespace}/${name}`).toBe('kata-system/kata-pull-u1');
        if (++reads < 3) throw notFound();
        return projection();
      },
    } as unknown as KubeClients['core'];
    const waits: string[] = [];
    const reader = new ProjectedPullSecrets({
      clients: { core },
      nodeName: 'a',
      node,
      pollMs: { initial: 1, max: 2 },
    });
    const out = await reader.read({
      uid: 'u1',
      signal: new AbortController().signal,
      onWaiting: (w) => waits.push(w.message),
    });
    expect(out).toEqual(payload);
    expect(reads).toBe(3);
    expect(waits).toHaveLength(2);
    expect(waits[0]).toContain('waiting for the controller');
  });

  it('stops waiting when the sandbox goes', async () => {
    const core = {
      readNamespacedSecret: async () => {
        throw notFound();
      },
    } as unknown as KubeClients['core'];
    const stop = new AbortController();
    const reader = new ProjectedPullSecrets({
      clients: { core },
      nodeName: 'a',
      node,
      pollMs: { initial: 1, max: 2 },
    });
    const read = reader.read({ uid: 'u1', signal: stop.signal, onWaiting: () => stop.abort() });
    await expect(read).rejects.toBeDefined();
  });
});

describe('node identity', () => {
  it('takes the node from the token user extra, exactly one', () => {
    const sa = 'system:serviceaccount:kata-system:kata-node-agent';
    expect(identityFrom({ username: sa, extra: { [NODE_NAME_EXTRA]: ['a'] } })).toEqual({
      username: sa,
      boundNode: 'a',
    });
    expect(identityFrom({ username: sa, extra: { [NODE_NAME_EXTRA]: ['a', 'b'] } })).toEqual({
      username: sa,
    });
    expect(nodeIdentityProblem({ username: sa, boundNode: 'a' }, 'a')).toBeUndefined();
    expect(nodeIdentityProblem({ username: sa }, 'a')).toContain('carry no node name');
    expect(nodeIdentityProblem({ username: sa, boundNode: 'b' }, 'a')).toContain(
      'bound to node b, not a',
    );
  });
});

describe('the node key on disk', () => {
  it('is made 0600 once, reused across restarts, made anew when unreadable', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'node-key-'));
    try {
      const first = await loadOrCreateNodeKey(dir);
      expect(first.created).toBe(true);
      const file = path.join(dir, NODE_KEY_FILE);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const again = await loadOrCreateNodeKey(dir);
      expect(again.created).toBe(false);
      expect(again.published).toEqual(first.published);
      chmodSync(file, 0o644);
      await loadOrCreateNodeKey(dir);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      writeFileSync(file, 'garbage');
      const fresh = await loadOrCreateNodeKey(dir);
      expect(fresh.created).toBe(true);
      expect(fresh.published.fingerprint).not.toBe(first.published.fingerprint);
      expect(readFileSync(file, 'utf8')).toContain('BEGIN PRIVATE KEY');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('usableKeys (the node agent filters the opened projection)', () => {
  it('reports an over-limit registry key as a problem and keeps the rest of the Secret', () => {
    const hostile = '************b.io';
    const auths = { auths: { [hostile]: { auth: b64('u:p') }, 'reg:5000': { auth: b64('u:p') } } };
    const read = usableKeys({
      secrets: [
        { name: 'other', data: auths },
        { name: 'cred', data: auths },
      ],
      problems: ['spec.imagePullSecrets[2]: Secret team/gone not found'],
    });
    expect(read.secrets).toEqual([
      { name: 'other', data: { auths: { 'reg:5000': { auth: b64('u:p') } } } },
      { name: 'cred', data: { auths: { 'reg:5000': { auth: b64('u:p') } } } },
    ]);
    expect(read.problems).toEqual([
      'spec.imagePullSecrets[2]: Secret team/gone not found',
      `spec.imagePullSecrets: Secret "other": registry key "${hostile}" has 12 wildcards (at most 8); ignored`,
      `spec.imagePullSecrets: Secret "cred": registry key "${hostile}" has 12 wildcards (at most 8); ignored`,
    ]);
  });
});

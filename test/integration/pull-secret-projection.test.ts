// The pull-secret projection on a real kube-apiserver with deploy/ installed (RBAC and admission
// policies) and the identities a cluster gives the operator: Pod-bound tokens for the controller
// and for node agents on nodes `a` and `b`, and a node agent credential without a node. The
// controller's projector reads a tenant's imagePullSecret and seals it into
// kata-system/kata-pull-<uid> for node a's key; node agent a opens it, node agent b can fetch it
// but not open it, and no node agent can read a Secret anywhere else.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { V1Secret } from '@kubernetes/client-node';
import { PullSecretProjector } from '../../src/controllers/pull-secret-projector.js';
import { NODE_LABEL, type KataSandbox } from '../../src/crds/index.js';
import { makeClients, type KubeClients } from '../../src/kube/kube-client.js';
import { NodeHeartbeat } from '../../src/kube/node-heartbeat.js';
import {
  leaseNodeKey,
  nodeKeyAnnotations,
  projectionName,
  projectionSecret,
} from '../../src/kube/pull-secret-projection.js';
import { createLogger } from '../../src/observability/logger.js';
import { generateX25519KeyPair, encodePublicKey } from '../../src/crypto/sealed-box.js';
import { nodeKeyOf } from '../../src/kube/pull-secret-projection.js';
import { reviewNodeIdentity, nodeIdentityProblem } from '../../src/node-agent/node-identity.js';
import { judgeProjection, ProjectedPullSecrets } from '../../src/node-agent/images/pull-secrets.js';
import {
  applyDeploy,
  podBoundToken,
  startPrivatePlane,
  type PrivatePlane,
} from './deploy-harness.js';

jest.setTimeout(300_000);

const NS = 'tenant';
const log = createLogger('pull-secret-projection-test');

let plane: PrivatePlane;
let admin: KubeClients;
let controller: KubeClients;
let agentA: KubeClients;
let agentB: KubeClients;
let agentNoNode: KubeClients;

async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { code?: number; message?: string; body?: unknown };
    const body = typeof e.body === 'string' ? e.body : JSON.stringify(e.body ?? '');
    return { code: e.code ?? 0, message: `${e.message ?? ''} ${body}` };
  }
  throw new Error('the request was allowed');
}

const newNodeKey = () => {
  const keys = generateX25519KeyPair();
  return { keys, published: nodeKeyOf(keys.publicKey, encodePublicKey(keys.publicKey)) };
};

const heartbeat = (clients: KubeClients, node: string, annotations: Record<string, string>) =>
  new NodeHeartbeat({
    clients,
    nodeName: node,
    capacity: () => ({ sandboxes: 4, memoryMiB: 4096 }),
    annotations,
  });

beforeAll(async () => {
  plane = await startPrivatePlane('kata-pullsecrets');
  await applyDeploy(plane);
  admin = makeClients(plane.admin());
  await plane.kubectl(['create', 'namespace', NS]);
  const [ctl, a, b] = await Promise.all([
    podBoundToken(plane, 'kata-controller', 'kata-controller-0', 'a'),
    podBoundToken(plane, 'kata-node-agent', 'kata-node-agent-a', 'a'),
    podBoundToken(plane, 'kata-node-agent', 'kata-node-agent-b', 'b'),
  ]);
  controller = makeClients(plane.tokenConfig(ctl));
  agentA = makeClients(plane.tokenConfig(a));
  agentB = makeClients(plane.tokenConfig(b));
  agentNoNode = makeClients(await plane.serviceAccountCertConfig('kata-system', 'kata-node-agent'));
  await plane.kubectl([
    ...['-n', NS, 'create', 'secret', 'docker-registry', 'regcred'],
    ...['--docker-server', 'reg.example:5000', '--docker-username', 'u', '--docker-password', 'pw'],
  ]);
  await plane.kubectl([
    '-n',
    'kube-system',
    'create',
    'secret',
    'generic',
    'ca-key',
    '--from-literal=key=private',
  ]);
}, 600_000);

afterAll(async () => {
  await plane?.down();
}, 180_000);

describe('what a node agent can read', () => {
  it('no Secret in kube-system or in a tenant namespace, by name or by listing', async () => {
    for (const [namespace, name] of [
      ['kube-system', 'ca-key'],
      [NS, 'regcred'],
    ] as const) {
      const r = await refusal(agentA.core.readNamespacedSecret({ namespace, name }));
      expect({ namespace, code: r.code }).toEqual({ namespace, code: 403 });
      expect(r.message).toMatch(/cannot get resource \W*secrets\W/);
    }
    expect(
      (await refusal(agentA.core.listNamespacedSecret({ namespace: 'kata-system' }))).code,
    ).toBe(403);
    expect(
      (await refusal(agentNoNode.core.readNamespacedSecret({ namespace: NS, name: 'regcred' })))
        .code,
    ).toBe(403);
  });

  it('knows from the API server which node its credentials belong to', async () => {
    const a = await reviewNodeIdentity(agentA.kc);
    expect(a.boundNode).toBe('a');
    expect(nodeIdentityProblem(a, 'a')).toBeUndefined();
    const none = await reviewNodeIdentity(agentNoNode.kc);
    expect(none.boundNode).toBeUndefined();
    expect(nodeIdentityProblem(none, 'a')).toContain('carry no node name');
  });
});

describe('node keys on Leases', () => {
  it('a node agent publishes its own key; one without a node identity cannot', async () => {
    const a = newNodeKey();
    const lease = await heartbeat(agentA, 'a', nodeKeyAnnotations(a.published)).renewOnce();
    expect(leaseNodeKey(lease)?.fingerprint).toBe(a.published.fingerprint);
    const r = await refusal(
      heartbeat(agentNoNode, 'c', nodeKeyAnnotations(newNodeKey().published)).renewOnce(),
    );
    expect(r.code).toBe(403);
    expect(r.message).toMatch(
      /must authenticate with a token bound to its Pod on a node|may not set or change it/,
    );
    // Node agent b may not write a's Lease, so not a's key either.
    expect(
      (
        await refusal(
          heartbeat(agentB, 'a', nodeKeyAnnotations(newNodeKey().published)).renewOnce(),
        )
      ).code,
    ).toBe(403);
  });

  it("nobody else sets or changes a node's key, not even the controller or an admin", async () => {
    const evil = nodeKeyAnnotations(newNodeKey().published);
    for (const [who, clients] of [
      ['controller', controller],
      ['admin', admin],
    ] as const) {
      const lease = await admin.coordination.readNamespacedLease({
        namespace: 'kata-system',
        name: 'kata-node-a',
      });
      lease.metadata = {
        ...lease.metadata,
        annotations: { ...lease.metadata?.annotations, ...evil },
        managedFields: undefined,
      };
      const r = await refusal(
        clients.coordination.replaceNamespacedLease({
          namespace: 'kata-system',
          name: 'kata-node-a',
          body: lease,
        }),
      );
      expect({ who, code: r.code }).toEqual({ who, code: 403 });
      // The controller's RBAC already stops it (it updates only its election Lease); the admin's
      // allows everything, and the policy answers.
      expect(r.message).toMatch(
        who === 'admin'
          ? /ValidatingAdmissionPolicy 'kata-node-pull-secret-key'/
          : /cannot update resource \W*leases\W/,
      );
    }
    // An admin planting a key on a new node's Lease is refused too.
    const r = await refusal(
      admin.coordination.createNamespacedLease({
        namespace: 'kata-system',
        body: {
          metadata: { name: 'kata-node-z', annotations: evil },
          spec: { holderIdentity: 'z' },
        },
      }),
    );
    expect(r.code).toBe(403);
    // Other annotations stay writable by whoever RBAC lets (the key unchanged).
    const lease = await admin.coordination.readNamespacedLease({
      namespace: 'kata-system',
      name: 'kata-node-a',
    });
    lease.metadata = {
      ...lease.metadata,
      annotations: { ...lease.metadata?.annotations, note: 'x' },
      managedFields: undefined,
    };
    await admin.coordination.replaceNamespacedLease({
      namespace: 'kata-system',
      name: 'kata-node-a',
      body: lease,
    });
  });
});

describe('the projection, end to end through the API server', () => {
  const a = newNodeKey();
  const b = newNodeKey();
  let sb: KataSandbox;

  beforeAll(async () => {
    await heartbeat(agentA, 'a', nodeKeyAnnotations(a.published)).renewOnce();
    await heartbeat(agentB, 'b', nodeKeyAnnotations(b.published)).renewOnce();
    sb = (await admin.custom.createNamespacedCustomObject({
      group: 'kata.sandbox.io',
      version: 'v1alpha1',
      namespace: NS,
      plural: 'katasandboxes',
      body: {
        apiVersion: 'kata.sandbox.io/v1alpha1',
        kind: 'KataSandbox',
        metadata: { name: 'web', namespace: NS },
        spec: {
          imagePullSecrets: [{ name: 'regcred' }, { name: 'absent' }],
          containers: [{ name: 'main', image: 'reg.example:5000/private/app:1' }],
        },
      },
    })) as KataSandbox;
    sb.metadata.labels = { [NODE_LABEL]: 'a' };
  });

  it('the controller seals the referenced Secrets for node a; agent a opens them, agent b cannot', async () => {
    const projector = new PullSecretProjector({ clients: controller, log });
    const lease = await controller.coordination.readNamespacedLease({
      namespace: 'kata-system',
      name: 'kata-node-a',
    });
    const key = leaseNodeKey(lease)!;
    await projector.project(sb, 'a', key, 'missing', new AbortController().signal);

    const uid = sb.metadata.uid!;
    const read = await new ProjectedPullSecrets({
      clients: agentA,
      nodeName: 'a',
      node: { keys: a.keys, fingerprint: a.published.fingerprint },
    }).read({ uid, signal: AbortSignal.timeout(30_000), onWaiting: () => undefined });
    expect(read.secrets).toHaveLength(1);
    expect(read.secrets[0]).toMatchObject({
      name: 'regcred',
      data: { auths: { 'reg.example:5000': { username: 'u', password: 'pw' } } },
    });
    expect(read.problems).toEqual([`spec.imagePullSecrets[1]: Secret ${NS}/absent not found`]);

    // Agent b may fetch it (RBAC cannot tell projections apart by name), but it is not for b.
    const fetched = await agentB.core.readNamespacedSecret({
      namespace: 'kata-system',
      name: projectionName(uid),
    });
    expect(
      judgeProjection(
        fetched,
        { node: 'b', uid },
        { keys: b.keys, fingerprint: b.published.fingerprint },
      ),
    ).toMatchObject({
      wait: { message: expect.stringContaining('is for node "a"') },
    });
    // Even told it is for b, b's key does not open it.
    const relabelled: V1Secret = {
      ...fetched,
      metadata: {
        ...fetched.metadata,
        labels: { ...fetched.metadata?.labels, [NODE_LABEL]: 'b' },
        annotations: {
          ...fetched.metadata?.annotations,
          'kata.sandbox.io/sealed-for-key': b.published.fingerprint,
        },
      },
    };
    expect(
      judgeProjection(
        relabelled,
        { node: 'b', uid },
        { keys: b.keys, fingerprint: b.published.fingerprint },
      ),
    ).toMatchObject({
      wait: { refused: true, message: expect.stringContaining('authentication failed') },
    });

    // A refresh with unchanged Secrets writes nothing; a changed Secret is re-sealed.
    const before = await admin.core.readNamespacedSecret({
      namespace: 'kata-system',
      name: projectionName(uid),
    });
    await projector.project(sb, 'a', key, 'refresh', new AbortController().signal);
    const same = await admin.core.readNamespacedSecret({
      namespace: 'kata-system',
      name: projectionName(uid),
    });
    expect(same.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
    await plane.kubectl([
      ...['-n', NS, 'create', 'secret', 'docker-registry', 'absent'],
      ...['--docker-server', 'other.example', '--docker-username', 'v', '--docker-password', 'pw2'],
    ]);
    await projector.project(sb, 'a', key, 'refresh', new AbortController().signal);
    const again = await new ProjectedPullSecrets({
      clients: agentA,
      nodeName: 'a',
      node: { keys: a.keys, fingerprint: a.published.fingerprint },
    }).read({ uid, signal: AbortSignal.timeout(30_000), onWaiting: () => undefined });
    expect(again.secrets.map((s) => s.name)).toEqual(['regcred', 'absent']);
    expect(again.problems).toEqual([]);
  });

  it('only the controller writes projections: admins and node agents are refused', async () => {
    const uid = sb.metadata.uid!;
    const planted = projectionSecret(
      { namespace: NS, name: 'web', uid: 'planted', node: 'a' },
      { secrets: [], problems: [] },
      a.published,
    );
    const r = await refusal(
      admin.core.createNamespacedSecret({ namespace: 'kata-system', body: planted }),
    );
    expect(r.code).toBe(403);
    expect(r.message).toContain("ValidatingAdmissionPolicy 'kata-pull-secret-projections'");
    expect(r.message).toContain('written by the kata-controller only');
    const d = await refusal(
      admin.core.deleteNamespacedSecret({ namespace: 'kata-system', name: projectionName(uid) }),
    );
    expect(d.code).toBe(403);
    expect(
      (
        await refusal(
          agentA.core.deleteNamespacedSecret({
            namespace: 'kata-system',
            name: projectionName(uid),
          }),
        )
      ).code,
    ).toBe(403);
    // Other Secrets of kata-system stay the admins'.
    await admin.core.createNamespacedSecret({
      namespace: 'kata-system',
      body: { metadata: { name: 'unrelated' }, stringData: { k: 'v' } },
    });
    await admin.core.deleteNamespacedSecret({ namespace: 'kata-system', name: 'unrelated' });
  });

  it('the controller deletes a projection, and collects one whose sandbox is gone', async () => {
    const projector = new PullSecretProjector({ clients: controller, log });
    const uid = sb.metadata.uid!;
    await admin.custom.deleteNamespacedCustomObject({
      group: 'kata.sandbox.io',
      version: 'v1alpha1',
      namespace: NS,
      plural: 'katasandboxes',
      name: 'web',
    });
    const view = {
      node: 'a',
      uid,
      namespace: NS,
      name: 'web',
      fingerprint: a.published.fingerprint,
    };
    expect(await projector.collect([view], new AbortController().signal)).toEqual([uid]);
    expect(
      (
        await refusal(
          admin.core.readNamespacedSecret({ namespace: 'kata-system', name: projectionName(uid) }),
        )
      ).code,
    ).toBe(404);
    await projector.remove(uid, 'again', new AbortController().signal); // already gone: fine
  });
});

// The admission policies of deploy/policy/ on a real kube-apiserver, with the identities a cluster
// gives the operator: tokens from the TokenRequest API bound to Pods on nodes `a` and `b` (the API
// server puts the node into the token's user extra), everything from deploy/ installed. Each
// request is made the way the components make it: status by server-side apply under field
// manager kata-node-agent (src/kube/status-patch.ts), finalizers by JSON patch with a
// resourceVersion test (src/kube/finalizers.ts), the Lease by the node heartbeat
// (src/kube/node-heartbeat.ts).
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import {
  CONTROLLER_FIELD_MANAGER,
  NODE_AGENT_FIELD_MANAGER,
  NODE_CLEANUP_FINALIZER,
  NODE_LABEL,
} from '../../src/crds/constants.js';
import { addFinalizer, patchFinalizers, removeFinalizer } from '../../src/kube/finalizers.js';
import { makeClients, type KubeClients } from '../../src/kube/kube-client.js';
import { NodeHeartbeat } from '../../src/kube/node-heartbeat.js';
import { applyStatus } from '../../src/kube/status-patch.js';
import {
  applyDeploy,
  CONTROLLER_USER,
  NODE_AGENT_USER,
  podBoundToken,
  startPrivatePlane,
  whoAmI,
  type PrivatePlane,
} from './deploy-harness.js';

const GROUP = 'kata.sandbox.io';
const VERSION = 'v1alpha1';
const PLURAL = 'katasandboxes';
const NS = 'policy-test';

// The project's testTimeout does not reach tests run with --selectProjects.
jest.setTimeout(300_000);

let plane: PrivatePlane;
let admin: KubeClients;
let controller: KubeClients;
let agentA: KubeClients;
let agentB: KubeClients;
let agentNoNode: KubeClients;
let agentAConfig: KubeConfig;

interface Sandbox {
  metadata: {
    name: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    finalizers?: string[];
  };
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
}

function sandboxBody(name: string, labels?: Record<string, string>): object {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'KataSandbox',
    metadata: { name, namespace: NS, ...(labels && { labels }) },
    spec: { containers: [{ name: 'main', image: 'busybox:1.36' }] },
  };
}

async function create(c: KubeClients, name: string, labels?: Record<string, string>) {
  return (await c.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: NS,
    plural: PLURAL,
    body: sandboxBody(name, labels),
  })) as Sandbox;
}

async function get(name: string): Promise<Sandbox> {
  return (await admin.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: NS,
    plural: PLURAL,
    name,
  })) as Sandbox;
}

/** A JSON patch of the sandbox object, as the controller binds and finalizers are changed. */
async function jsonPatch(c: KubeClients, name: string, ops: object[]): Promise<Sandbox> {
  return (await c.custom.patchNamespacedCustomObject(
    { group: GROUP, version: VERSION, namespace: NS, plural: PLURAL, name, body: ops },
    setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
  )) as Sandbox;
}

/** The controller's bind: label kata.sandbox.io/node=<node> with a resourceVersion test. */
async function bind(c: KubeClients, name: string, node: string): Promise<Sandbox> {
  const sb = await get(name);
  const label = NODE_LABEL.replace('~', '~0').replace('/', '~1');
  return jsonPatch(c, name, [
    { op: 'test', path: '/metadata/resourceVersion', value: sb.metadata.resourceVersion },
    sb.metadata.labels
      ? { op: 'add', path: `/metadata/labels/${label}`, value: node }
      : { op: 'add', path: '/metadata/labels', value: { [NODE_LABEL]: node } },
  ]);
}

const vmReady = (message: string) => ({
  conditions: [
    {
      type: 'VMReady',
      status: 'True',
      reason: 'Booted',
      message,
      lastTransitionTime: new Date().toISOString(),
    },
  ],
});

/** The server's message of a refused call (a KubeApiError from callApi, or an ApiException). */
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

const POLICY_AGENT = "ValidatingAdmissionPolicy 'kata-node-agent-restriction'";
const POLICY_LABEL = "ValidatingAdmissionPolicy 'kata-sandbox-node-label'";

beforeAll(async () => {
  plane = await startPrivatePlane('kata-policy');
  await applyDeploy(plane);
  admin = makeClients(plane.admin());
  await plane.kubectl(['create', 'namespace', NS]);
  const [ctl, a, b] = await Promise.all([
    podBoundToken(plane, 'kata-controller', 'kata-controller-0', 'a'),
    podBoundToken(plane, 'kata-node-agent', 'kata-node-agent-a', 'a'),
    podBoundToken(plane, 'kata-node-agent', 'kata-node-agent-b', 'b'),
  ]);
  controller = makeClients(plane.tokenConfig(ctl));
  agentAConfig = plane.tokenConfig(a);
  agentA = makeClients(agentAConfig);
  agentB = makeClients(plane.tokenConfig(b));
  agentNoNode = makeClients(await plane.serviceAccountCertConfig('kata-system', 'kata-node-agent'));
}, 600_000);

afterAll(async () => {
  await plane?.down();
}, 180_000);

describe('identities', () => {
  it('a node agent token bound to its Pod carries the node name', async () => {
    const who = await whoAmI(
      plane,
      plane.tokenConfigFile(agentAConfig.getCurrentUser()?.token ?? '', 'a'),
    );
    expect(who.username).toBe(NODE_AGENT_USER);
    expect(who.extra['authentication.kubernetes.io/node-name']).toEqual(['a']);
  });
});

describe('node agents are held to their own node', () => {
  beforeAll(async () => {
    await create(admin, 'on-a');
    await create(admin, 'on-b');
    await bind(controller, 'on-a', 'a');
    await bind(controller, 'on-b', 'b');
  });

  it("node agent a applies the status of its own node's sandbox", async () => {
    const out = await applyStatus<unknown, Sandbox>(
      agentA,
      NODE_AGENT_FIELD_MANAGER,
      { namespace: NS, name: 'on-a' },
      vmReady('booted on a'),
    );
    expect(JSON.stringify(out.status)).toContain('booted on a');
  });

  it("node agent a may not apply the status of node b's sandbox; agent b may", async () => {
    const r = await refusal(
      applyStatus(agentA, NODE_AGENT_FIELD_MANAGER, { namespace: NS, name: 'on-b' }, vmReady('x')),
    );
    expect(r.code).toBe(403);
    expect(r.message).toContain(POLICY_AGENT);
    expect(r.message).toContain(
      `kata-node-agent on node a may only change KataSandboxes labelled kata.sandbox.io/node=a; ${NS}/on-b is on node b`,
    );
    await applyStatus(
      agentB,
      NODE_AGENT_FIELD_MANAGER,
      { namespace: NS, name: 'on-b' },
      vmReady('b'),
    );
  });

  it('a node agent may not touch an unscheduled sandbox', async () => {
    await create(admin, 'unscheduled');
    const r = await refusal(
      applyStatus(
        agentA,
        NODE_AGENT_FIELD_MANAGER,
        { namespace: NS, name: 'unscheduled' },
        vmReady('x'),
      ),
    );
    expect(r.code).toBe(403);
    expect(r.message).toContain('is not scheduled to a node');
  });

  it("a node agent may not write the controller's status fields", async () => {
    const r = await refusal(
      applyStatus(
        agentA,
        NODE_AGENT_FIELD_MANAGER,
        { namespace: NS, name: 'on-a' },
        {
          phase: 'Running',
        },
      ),
    );
    expect(r.code).toBe(403);
    expect(r.message).toContain("may not change the controller's status fields");
    // ... which the controller writes itself.
    await applyStatus(
      controller,
      CONTROLLER_FIELD_MANAGER,
      { namespace: NS, name: 'on-a' },
      {
        phase: 'Creating',
      },
    );
    // The agent's later applies leave them alone and pass.
    await applyStatus(
      agentA,
      NODE_AGENT_FIELD_MANAGER,
      { namespace: NS, name: 'on-a' },
      vmReady('again'),
    );
    expect((await get('on-a')).status?.['phase']).toBe('Creating');
  });

  it("changing a sandbox's labels or annotations as a node agent is denied", async () => {
    for (const [what, ops] of [
      ['label', [{ op: 'add', path: '/metadata/labels/extra', value: 'x' }]],
      [
        'node label',
        [{ op: 'replace', path: '/metadata/labels/kata.sandbox.io~1node', value: 'b' }],
      ],
      ['annotation', [{ op: 'add', path: '/metadata/annotations', value: { x: 'y' } }]],
    ] as const) {
      const r = await refusal(jsonPatch(agentA, 'on-a', [...ops]));
      expect({ what, code: r.code, message: r.message }).toMatchObject({ what, code: 403 });
      // The node label is guarded by both policies; either may answer first.
      expect(r.message).toMatch(
        what === 'node label'
          ? /kata-node-agent-restriction.*may change only the finalizers|kata-sandbox-node-label.*may not add, change or remove it/
          : /kata-node-agent-restriction.*may change only the finalizers of KataSandbox/,
      );
    }
    expect((await get('on-a')).metadata.labels).toEqual({ [NODE_LABEL]: 'a' });
  });

  it("changing a sandbox's spec as a node agent is refused (the CRD already makes spec immutable)", async () => {
    // Validation runs before admission policies: the CRD's own rule answers first (422), so the
    // policy's pin on spec is a second line for a future CRD that lets spec change.
    const r = await refusal(
      jsonPatch(agentA, 'on-a', [
        { op: 'replace', path: '/spec/containers/0/image', value: 'evil:1' },
      ]),
    );
    expect(r.code).toBe(422);
    expect(r.message).toContain('spec is immutable');
    expect((await get('on-a')).spec['containers']).toMatchObject([
      { name: 'main', image: 'busybox:1.36' },
    ]);
  });

  it('a node agent may not add finalizers, only remove kata.sandbox.io/node-cleanup', async () => {
    // The controller adds it before scheduling (it was already bound here; that does not matter).
    expect(
      await addFinalizer(controller, { namespace: NS, name: 'on-a' }, NODE_CLEANUP_FINALIZER),
    ).toBe('changed');
    const sb = await get('on-a');
    const r = await refusal(
      patchFinalizers(agentA, { namespace: NS, name: 'on-a' }, [
        { op: 'test', path: '/metadata/resourceVersion', value: sb.metadata.resourceVersion },
        { op: 'add', path: '/metadata/finalizers/-', value: 'example.com/other' },
      ]),
    );
    expect(r.code).toBe(403);
    expect(r.message).toContain('may only remove finalizer kata.sandbox.io/node-cleanup');
    // Removing it on another node's sandbox is refused, on its own allowed.
    await addFinalizer(controller, { namespace: NS, name: 'on-b' }, NODE_CLEANUP_FINALIZER);
    const rb = await refusal(
      removeFinalizer(agentA, { namespace: NS, name: 'on-b' }, NODE_CLEANUP_FINALIZER, {
        attempts: 1,
      }),
    );
    expect(rb.code).toBe(403);
    expect(rb.message).toContain('on node b');
    expect(
      await removeFinalizer(agentA, { namespace: NS, name: 'on-a' }, NODE_CLEANUP_FINALIZER),
    ).toBe('changed');
    expect((await get('on-a')).metadata.finalizers ?? []).toEqual([]);
  });

  it('a node agent may not create or delete sandboxes (RBAC)', async () => {
    const r = await refusal(create(agentA, 'by-agent'));
    expect(r.code).toBe(403);
    const d = await refusal(
      agentA.custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        name: 'on-a',
      }),
    );
    expect(d.code).toBe(403);
  });

  it('a node agent writes only Lease kata-node-<its node>', async () => {
    const own = new NodeHeartbeat({
      clients: agentA,
      nodeName: 'a',
      capacity: () => ({ sandboxes: 4, memoryMiB: 4096 }),
    });
    const lease = await own.renewOnce();
    expect(lease.metadata?.name).toBe('kata-node-a');
    await own.renewOnce(); // the update too

    const other = new NodeHeartbeat({
      clients: agentA,
      nodeName: 'b',
      capacity: () => ({ sandboxes: 4, memoryMiB: 4096 }),
    });
    const r = await refusal(other.renewOnce());
    expect(r.code).toBe(403);
    expect(r.message).toContain(
      'kata-node-agent on node a may only write Lease kata-system/kata-node-a, not kata-system/kata-node-b',
    );
    // Agent b's own Lease exists after b writes it, and a still cannot update it.
    await new NodeHeartbeat({
      clients: agentB,
      nodeName: 'b',
      capacity: () => ({ sandboxes: 1, memoryMiB: 1 }),
    }).renewOnce();
    const u = await refusal(other.renewOnce());
    expect(u.code).toBe(403);
  });

  it('a node agent cannot read a pull Secret of a tenant, cannot list Secrets, and may never write one', async () => {
    await plane.kubectl([
      '-n',
      NS,
      'create',
      'secret',
      'docker-registry',
      'regcred',
      '--docker-server',
      'reg.example:5000',
      '--docker-username',
      'u',
      '--docker-password',
      'p',
    ]);
    // Tenants' pull Secrets reach it only as sealed projections (pull-secret-projection.test.ts).
    expect(
      (await refusal(agentA.core.readNamespacedSecret({ name: 'regcred', namespace: NS }))).code,
    ).toBe(403);
    expect((await refusal(agentA.core.listNamespacedSecret({ namespace: NS }))).code).toBe(403);
    // Even with RBAC granting it (a mistake someone could make), the policy refuses the write.
    await plane.kubectl([
      '-n',
      NS,
      'create',
      'role',
      'too-much',
      '--verb=create,update,delete',
      '--resource=secrets',
    ]);
    await plane.kubectl([
      '-n',
      NS,
      'create',
      'rolebinding',
      'too-much',
      '--role=too-much',
      '--serviceaccount=kata-system:kata-node-agent',
    ]);
    try {
      const body = { metadata: { name: 'planted', namespace: NS }, stringData: { k: 'v' } };
      const r = await refusal(agentA.core.createNamespacedSecret({ namespace: NS, body }));
      expect(r.code).toBe(403);
      expect(r.message).toContain(
        `kata-node-agent on node a may only read Secrets (the imagePullSecrets of its sandboxes), not create Secret ${NS}/planted`,
      );
      const d = await refusal(
        agentA.core.deleteNamespacedSecret({ name: 'regcred', namespace: NS }),
      );
      expect(d.code).toBe(403);
      expect(d.message).toContain('may only read Secrets');
    } finally {
      await plane.kubectl(['-n', NS, 'delete', 'rolebinding,role', 'too-much']);
    }
  });

  it('a node agent without a Pod-bound token (no node identity) is refused', async () => {
    const r = await refusal(
      applyStatus(
        agentNoNode,
        NODE_AGENT_FIELD_MANAGER,
        { namespace: NS, name: 'on-a' },
        vmReady('x'),
      ),
    );
    expect(r.code).toBe(403);
    expect(r.message).toContain('must authenticate with a token bound to its Pod on a node');
    const l = await refusal(
      new NodeHeartbeat({
        clients: agentNoNode,
        nodeName: 'a',
        capacity: () => ({ sandboxes: 1, memoryMiB: 1 }),
      }).renewOnce(),
    );
    expect(l.code).toBe(403);
  });
});

describe('only the controller sets the node label', () => {
  it('creating a sandbox that already carries the label is denied, even for an admin', async () => {
    const r = await refusal(create(admin, 'pre-labelled', { [NODE_LABEL]: 'a' }));
    expect(r.code).toBe(403);
    expect(r.message).toContain(POLICY_LABEL);
    expect(r.message).toContain('may not create a KataSandbox carrying it');
    // Without the label it is created (the allowed counterpart).
    await create(admin, 'plain', { app: 'web' });
  });

  it('adding, changing or removing it by anyone but the controller is denied', async () => {
    const r = await refusal(bind(admin, 'plain', 'a'));
    expect(r.code).toBe(403);
    expect(r.message).toContain('may not add, change or remove it');
    await bind(controller, 'plain', 'a');
    const change = await refusal(
      jsonPatch(admin, 'plain', [
        { op: 'replace', path: '/metadata/labels/kata.sandbox.io~1node', value: 'b' },
      ]),
    );
    expect(change.code).toBe(403);
    const remove = await refusal(
      jsonPatch(admin, 'plain', [{ op: 'remove', path: '/metadata/labels/kata.sandbox.io~1node' }]),
    );
    expect(remove.code).toBe(403);
    // Other labels stay the users' to change.
    await jsonPatch(admin, 'plain', [{ op: 'replace', path: '/metadata/labels/app', value: 'db' }]);
    // The controller may move it (e.g. rebinding after a failed bind).
    await bind(controller, 'plain', 'b');
    expect((await get('plain')).metadata.labels).toEqual({ app: 'db', [NODE_LABEL]: 'b' });
  });

  it('a user with kata-sandbox-edit manages sandboxes but neither sets the label nor writes status', async () => {
    // Users as ServiceAccounts of the test namespace, bound to the roles deploy/ ships (bound
    // directly: aggregation into admin/edit/view is kube-controller-manager's job, absent here).
    await plane.kubectl(['-n', NS, 'create', 'serviceaccount', 'alice']);
    await plane.kubectl(['-n', NS, 'create', 'serviceaccount', 'bob']);
    await plane.kubectl([
      ...['-n', NS, 'create', 'rolebinding', 'alice-edit', '--clusterrole=kata-sandbox-edit'],
      `--serviceaccount=${NS}:alice`,
    ]);
    await plane.kubectl([
      ...['-n', NS, 'create', 'rolebinding', 'bob-view', '--clusterrole=kata-sandbox-view'],
      `--serviceaccount=${NS}:bob`,
    ]);
    const alice = makeClients(await plane.serviceAccountCertConfig(NS, 'alice'));
    const bob = makeClients(await plane.serviceAccountCertConfig(NS, 'bob'));

    await create(alice, 'alices');
    const labelled = await refusal(create(alice, 'alices-pinned', { [NODE_LABEL]: 'a' }));
    expect(labelled.code).toBe(403);
    expect(labelled.message).toContain(POLICY_LABEL);
    const relabel = await refusal(bind(alice, 'alices', 'a'));
    expect(relabel.code).toBe(403);
    expect(relabel.message).toContain(POLICY_LABEL);
    const status = await refusal(
      applyStatus(alice, 'kubectl', { namespace: NS, name: 'alices' }, { phase: 'Running' }),
    );
    expect(status.code).toBe(403);
    expect(status.message).toContain('cannot patch resource "katasandboxes/status"');

    expect((await get('alices')).metadata.name).toBe('alices');
    const viewed = (await bob.custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: PLURAL,
      name: 'alices',
    })) as Sandbox;
    expect(viewed.metadata.name).toBe('alices');
    const bobCreates = await refusal(create(bob, 'bobs'));
    expect(bobCreates.code).toBe(403);
    expect(bobCreates.message).toMatch(/cannot create resource \W*katasandboxes\W/);
  });

  it('the controller identity is the pod-bound kata-controller ServiceAccount', async () => {
    const token = controller.kc.getCurrentUser()?.token ?? '';
    const who = await whoAmI(plane, plane.tokenConfigFile(token, 'controller'));
    expect(who.username).toBe(CONTROLLER_USER);
  });
});

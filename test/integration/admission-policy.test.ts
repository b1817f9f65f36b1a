// The admission policies of deploy/policy/ on a real kube-apiserver, with the identities a cluster
// gives the operator: tokens from the TokenRequest API bound to Pods on nodes `a` and `b` (the API
// server puts the node into the token's user extra), everything from deploy/ installed. Each
// request is made the way the components make it: status by server-side apply under field
// manager kata-node-agent (src/kube/status-patch.ts), finalizers by JSON patch with a
// resourceVersion test (src/kube/finalizers.ts), the Lease by the node heartbeat
// (src/kube/node-heartbeat.ts).
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import {
  PatchStrategy,
  setHeaderOptions,
  V1MicroTime,
  type EventsV1Event,
  type KubeConfig,
} from '@kubernetes/client-node';
import {
  CONTROLLER_FIELD_MANAGER,
  NODE_AGENT_FIELD_MANAGER,
  NODE_CLEANUP_FINALIZER,
  NODE_LABEL,
} from '../../src/crds/constants.js';
import {
  CONTROLLER_REPORTER,
  EventRecorder,
  NODE_AGENT_REPORTER,
  nodeAgentInstance,
} from '../../src/kube/events.js';
import { addFinalizer, patchFinalizers, removeFinalizer } from '../../src/kube/finalizers.js';
import { makeClients, type KubeClients } from '../../src/kube/kube-client.js';
import { NodeHeartbeat } from '../../src/kube/node-heartbeat.js';
import { applyStatus } from '../../src/kube/status-patch.js';
import type { KataWarmPool } from '../../src/crds/index.js';
import type { Informer } from '../../src/kube/informer.js';
import { applyWarmPoolEntry } from '../../src/node-agent/warm-pool/warm-pool-status.js';
import { warmPoolConditionsReconciler } from '../../src/controllers/warm-pool-conditions.js';
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
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    finalizers?: string[];
  };
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
}

function sandboxBody(
  name: string,
  labels?: Record<string, string>,
  ns = NS,
  spec: Record<string, unknown> = {},
): object {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'KataSandbox',
    metadata: { name, namespace: ns, ...(labels && { labels }) },
    spec: { containers: [{ name: 'main', image: 'busybox:1.36' }], ...spec },
  };
}

async function create(
  c: KubeClients,
  name: string,
  labels?: Record<string, string>,
  ns = NS,
  spec: Record<string, unknown> = {},
) {
  return (await c.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: PLURAL,
    body: sandboxBody(name, labels, ns, spec),
  })) as Sandbox;
}

async function get(name: string, ns = NS): Promise<Sandbox> {
  return (await admin.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: PLURAL,
    name,
  })) as Sandbox;
}

/** A JSON patch of the sandbox object, as the controller binds and finalizers are changed. */
async function jsonPatch(c: KubeClients, name: string, ops: object[], ns = NS): Promise<Sandbox> {
  return (await c.custom.patchNamespacedCustomObject(
    { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: ops },
    setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
  )) as Sandbox;
}

/** The controller's bind: label kata.sandbox.io/node=<node> with a resourceVersion test. */
async function bind(c: KubeClients, name: string, node: string, ns = NS): Promise<Sandbox> {
  const sb = await get(name, ns);
  const label = NODE_LABEL.replace('~', '~0').replace('/', '~1');
  return jsonPatch(
    c,
    name,
    [
      { op: 'test', path: '/metadata/resourceVersion', value: sb.metadata.resourceVersion },
      sb.metadata.labels
        ? { op: 'add', path: `/metadata/labels/${label}`, value: node }
        : { op: 'add', path: '/metadata/labels', value: { [NODE_LABEL]: node } },
    ],
    ns,
  );
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
const POLICY_CONTROLLER = "ValidatingAdmissionPolicy 'kata-controller-restriction'";
const POLICY_EVENTS = "ValidatingAdmissionPolicy 'kata-node-agent-events'";
const POLICY_EVENT_SANDBOX = "ValidatingAdmissionPolicy 'kata-node-agent-event-sandbox'";
const POLICY_NETNS = "ValidatingAdmissionPolicy 'kata-sandbox-netns'";

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

/** Retries `fn` while it throws (RBAC and namespace changes reach admission through informers). */
async function soon<T>(fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

const condition = (type: string, status: 'True' | 'False', reason: string, message: string) => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: new Date().toISOString(),
});

describe("the controller's conditions are the controller's", () => {
  beforeAll(async () => {
    await create(admin, 'cond-a');
    await bind(controller, 'cond-a', 'a');
    await applyStatus(
      controller,
      CONTROLLER_FIELD_MANAGER,
      { namespace: NS, name: 'cond-a' },
      { conditions: [condition('Scheduled', 'True', 'Scheduled', 'placed on node a')] },
    );
  });

  it("a node agent's server-side apply of Scheduled is refused; its own conditions pass", async () => {
    const forged = await refusal(
      applyStatus(
        agentA,
        NODE_AGENT_FIELD_MANAGER,
        { namespace: NS, name: 'cond-a' },
        { conditions: [condition('Scheduled', 'False', 'Unschedulable', 'forged')] },
      ),
    );
    expect(forged.code).toBe(403);
    expect(forged.message).toContain(POLICY_AGENT);
    expect(forged.message).toContain(
      `kata-node-agent on node a may only write its own conditions (VMReady, AgentConnected, NetworkReady, ContainersReady, Ready, Terminated) of KataSandbox ${NS}/cond-a, not add, change or remove condition Scheduled`,
    );
    // A condition type of nobody's is refused too.
    const other = await refusal(
      applyStatus(
        agentA,
        NODE_AGENT_FIELD_MANAGER,
        { namespace: NS, name: 'cond-a' },
        { conditions: [condition('Healthy', 'True', 'Fine', '')] },
      ),
    );
    expect(other.code).toBe(403);
    expect(other.message).toContain('not add, change or remove condition Healthy');
    // Its own, applied alongside the controller's entry, pass and leave Scheduled as it was.
    await applyStatus(
      agentA,
      NODE_AGENT_FIELD_MANAGER,
      { namespace: NS, name: 'cond-a' },
      {
        conditions: [
          condition('VMReady', 'True', 'Booted', ''),
          condition('Ready', 'True', 'Ready', ''),
        ],
      },
    );
    const conds = ((await get('cond-a')).status?.['conditions'] ?? []) as {
      type: string;
      message: string;
    }[];
    expect(conds.map((c) => c.type).sort()).toEqual(['Ready', 'Scheduled', 'VMReady']);
    expect(conds.find((c) => c.type === 'Scheduled')?.message).toBe('placed on node a');
  });
});

describe('no owner references by proxy', () => {
  let owner: { apiVersion: string; kind: string; name: string; uid: string };

  beforeAll(async () => {
    const cm = await admin.core.createNamespacedConfigMap({
      namespace: NS,
      body: { metadata: { name: 'bait' } },
    });
    owner = { apiVersion: 'v1', kind: 'ConfigMap', name: 'bait', uid: cm.metadata?.uid ?? '' };
    await create(admin, 'owned');
    await bind(controller, 'owned', 'a');
  });

  it('the controller may not add an owner reference to a sandbox, nor a finalizer of its own choosing', async () => {
    const r = await refusal(
      jsonPatch(controller, 'owned', [
        { op: 'add', path: '/metadata/ownerReferences', value: [owner] },
      ]),
    );
    expect(r.code).toBe(403);
    expect(r.message).toContain(POLICY_CONTROLLER);
    expect(r.message).toContain(
      `kata-controller may not add, change or remove owner references of KataSandbox ${NS}/owned`,
    );
    const f = await refusal(
      jsonPatch(controller, 'owned', [
        { op: 'add', path: '/metadata/finalizers', value: ['example.com/hold'] },
      ]),
    );
    expect(f.code).toBe(403);
    expect(f.message).toContain('may add or remove only finalizer kata.sandbox.io/node-cleanup');
    expect((await get('owned')).metadata).not.toHaveProperty('ownerReferences');
  });

  it('nor may a node agent; the owner references users set stay theirs, and the controller works around them', async () => {
    const r = await refusal(
      jsonPatch(agentA, 'owned', [
        { op: 'add', path: '/metadata/ownerReferences', value: [owner] },
      ]),
    );
    expect(r.code).toBe(403);
    expect(r.message).toContain(POLICY_AGENT);
    await jsonPatch(admin, 'owned', [
      { op: 'add', path: '/metadata/ownerReferences', value: [owner] },
    ]);
    // The controller's own edits leave them as they are, and pass.
    expect(
      await addFinalizer(controller, { namespace: NS, name: 'owned' }, NODE_CLEANUP_FINALIZER),
    ).toBe('changed');
    const removed = await refusal(
      jsonPatch(controller, 'owned', [{ op: 'remove', path: '/metadata/ownerReferences' }]),
    );
    expect(removed.code).toBe(403);
    expect((await get('owned')).metadata).toMatchObject({ ownerReferences: [owner] });
  });
});

describe('node agents write Events only about sandboxes on their node, as themselves', () => {
  const TENANT = 'policy-tenant';
  const EMPTY = 'policy-empty';
  let evA: Sandbox;
  let evB: Sandbox;
  let tenantB: Sandbox;

  const ref = (sb: Sandbox) => ({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'KataSandbox',
    namespace: sb.metadata.namespace ?? NS,
    name: sb.metadata.name,
    uid: sb.metadata.uid ?? '',
  });

  /** An events.k8s.io/v1 Event as EventRecorder writes it. */
  function eventBody(
    name: string,
    regarding: object,
    over: { controller?: string; instance?: string } = {},
  ) {
    return {
      metadata: { name },
      eventTime: new V1MicroTime(),
      reportingController: over.controller ?? NODE_AGENT_REPORTER,
      reportingInstance: over.instance ?? nodeAgentInstance('a'),
      action: 'Reconcile',
      reason: 'VMExited',
      note: 'the VM stopped',
      type: 'Warning',
      regarding,
    };
  }

  const createEvent = (c: KubeClients, ns: string, body: object) =>
    c.events.createNamespacedEvent({ namespace: ns, body: body as EventsV1Event });

  beforeAll(async () => {
    await plane.kubectl(['create', 'namespace', TENANT]);
    await plane.kubectl(['create', 'namespace', EMPTY]);
    await create(admin, 'ev-a');
    await create(admin, 'ev-b');
    await create(admin, 'tenant-b', undefined, TENANT);
    evA = await bind(controller, 'ev-a', 'a');
    evB = await bind(controller, 'ev-b', 'b');
    tenantB = await bind(controller, 'tenant-b', 'b', TENANT);
  });

  it("a node agent's own Events, written as the node agent writes them, are accepted (create and series)", async () => {
    // The sandbox's params reach the policy through the API server's informer: a first Event
    // right after the sandbox was bound may see it not yet; the node agent's recorder only logs.
    await soon(() =>
      createEvent(agentA, NS, eventBody('ev-a.probe', ref(evA))).then(() => undefined),
    );
    const recorder = new EventRecorder({
      clients: agentA,
      reportingController: NODE_AGENT_REPORTER,
      reportingInstance: nodeAgentInstance('a'),
      seriesFlushMs: 10,
    });
    const args = {
      regarding: ref(evA),
      type: 'Warning' as const,
      reason: 'BootFailed',
      action: 'Reconcile',
      note: 'QEMU exited',
    };
    recorder.record(args);
    await recorder.flush();
    recorder.record(args);
    await new Promise((r) => setTimeout(r, 50));
    await recorder.flush();
    expect(recorder.stats).toEqual({ created: 1, seriesUpdates: 1, failures: 0 });
    const listed = await admin.events.listNamespacedEvent({ namespace: NS });
    const mine = listed.items.find((e) => e.reason === 'BootFailed');
    expect(mine).toMatchObject({
      reportingController: NODE_AGENT_REPORTER,
      reportingInstance: 'kata-node-agent-a',
      regarding: { name: 'ev-a', uid: evA.metadata.uid },
      series: { count: 2 },
    });
  });

  it("node agent a may not write an Event about node b's sandbox, here or in a tenant's namespace", async () => {
    const here = await refusal(createEvent(agentA, NS, eventBody('ev-b.a1', ref(evB))));
    expect(here.code).toBe(403);
    expect(here.message).toContain(POLICY_EVENT_SANDBOX);
    expect(here.message).toContain(
      `kata-node-agent on node a may only write Events about KataSandboxes labelled kata.sandbox.io/node=a; ${NS}/ev-b is on node b`,
    );
    const tenant = await refusal(
      createEvent(agentA, TENANT, eventBody('tenant-b.a1', ref(tenantB))),
    );
    expect(tenant.code).toBe(403);
    expect(tenant.message).toContain(`${TENANT}/tenant-b is on node b`);
    // Node b's agent, for its own sandbox, may.
    await soon(() =>
      createEvent(
        agentB,
        TENANT,
        eventBody('tenant-b.b1', ref(tenantB), { instance: nodeAgentInstance('b') }),
      ).then(() => undefined),
    );
  });

  it('a node agent may not claim to be the controller or another node, nor write about other things', async () => {
    const asController = await refusal(
      createEvent(agentA, NS, eventBody('ev-a.c1', ref(evA), { controller: CONTROLLER_REPORTER })),
    );
    expect(asController.code).toBe(403);
    expect(asController.message).toContain(
      'kata-node-agent on node a must write Events as reportingController kata.sandbox.io/node-agent, reportingInstance kata-node-agent-a, not kata.sandbox.io/controller / kata-node-agent-a',
    );
    const asB = await refusal(
      createEvent(agentA, NS, eventBody('ev-a.b1', ref(evA), { instance: nodeAgentInstance('b') })),
    );
    expect(asB.code).toBe(403);
    expect(asB.message).toContain('not kata.sandbox.io/node-agent / kata-node-agent-b');
    const wrongUid = await refusal(
      createEvent(agentA, NS, eventBody('ev-a.u1', { ...ref(evA), uid: 'not-its-uid' })),
    );
    expect(wrongUid.code).toBe(403);
    const aPod = await refusal(
      createEvent(
        agentA,
        NS,
        eventBody('pod.a1', { apiVersion: 'v1', kind: 'Pod', namespace: NS, name: 'web' }),
      ),
    );
    expect(aPod.code).toBe(403);
    expect(aPod.message).toContain(
      `may only write Events regarding a KataSandbox of the Event's namespace ${NS}`,
    );
    // In a namespace without sandboxes the sandbox check has no params and stands aside; the
    // signature and the kind of object still hold.
    const emptyAsController = await refusal(
      createEvent(
        agentA,
        EMPTY,
        eventBody(
          'x.c1',
          { ...ref(evA), namespace: EMPTY, name: 'x' },
          { controller: CONTROLLER_REPORTER },
        ),
      ),
    );
    expect(emptyAsController.code).toBe(403);
    expect(emptyAsController.message).toContain(POLICY_EVENTS);
  });

  it('everyone else writes Events as before, in namespaces with and without sandboxes', async () => {
    // The API server looks up a binding's params before the policy's matchConditions: a
    // param-finding binding that denied when it found none refused the kubelet's Events about
    // the node agent's own Pod in kata-system (found on the cluster of hack/cluster.sh).
    for (const ns of [EMPTY, NS]) {
      const made = await admin.core.createNamespacedEvent({
        namespace: ns,
        body: {
          metadata: { name: `pod-web.${ns}` },
          involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: ns, name: 'web' },
          reason: 'Pulled',
          message: 'Container image already present on machine',
          type: 'Normal',
          source: { component: 'kubelet', host: 'a' },
        },
      });
      expect(made.metadata?.name).toBe(`pod-web.${ns}`);
    }
  });

  it('the same holds for a core/v1 Event, should RBAC ever grant one', async () => {
    await plane.kubectl([
      ...['-n', NS, 'create', 'role', 'core-events', '--verb=create', '--resource=events'],
    ]);
    await plane.kubectl([
      ...['-n', NS, 'create', 'rolebinding', 'core-events', '--role=core-events'],
      '--serviceaccount=kata-system:kata-node-agent',
    ]);
    try {
      const body = {
        metadata: { name: 'ev-b.core1' },
        involvedObject: ref(evB),
        reason: 'VMExited',
        message: 'forged',
        type: 'Warning',
        source: { component: CONTROLLER_REPORTER },
        reportingComponent: CONTROLLER_REPORTER,
        reportingInstance: 'kata-controller-0',
      };
      const r = await soon(async () => {
        const got = await refusal(agentA.core.createNamespacedEvent({ namespace: NS, body }));
        // RBAC's grant reaches the authorizer through an informer: until then it is RBAC's 403.
        // (the first of the two Event policies to answer refuses it)
        if (!/ValidatingAdmissionPolicy 'kata-node-agent-event(s|-sandbox)'/.test(got.message)) {
          throw new Error(got.message);
        }
        return got;
      });
      expect(r.code).toBe(403);
    } finally {
      await plane.kubectl(['-n', NS, 'delete', 'rolebinding,role', 'core-events']);
    }
  });

  it("a node agent may not rewrite the controller's Events", async () => {
    const recorder = new EventRecorder({
      clients: controller,
      reportingController: CONTROLLER_REPORTER,
      reportingInstance: 'kata-controller-0',
    });
    recorder.record({
      regarding: ref(evA),
      type: 'Normal',
      reason: 'Scheduled',
      action: 'Scheduled',
      note: 'placed on node a',
    });
    await recorder.flush();
    expect(recorder.stats.created).toBe(1);
    const listed = await admin.events.listNamespacedEvent({ namespace: NS });
    const theirs = listed.items.find(
      (e) => e.reason === 'Scheduled' && e.regarding?.name === 'ev-a',
    );
    const r = await refusal(
      agentA.events.patchNamespacedEvent(
        {
          namespace: NS,
          name: theirs?.metadata?.name ?? '',
          // A series (the one thing an Event's writer updates) counting the controller's Event
          // up, as if it kept rescheduling.
          body: {
            series: { count: 99, lastObservedTime: new V1MicroTime().toISOString() },
          } as never,
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    expect(r.code).toBe(403);
    expect(r.message).toContain(POLICY_EVENTS);
    expect(r.message).toContain('not kata.sandbox.io/controller / kata-controller-0');
  });
});

describe('network mode netns only where cluster admins allow it', () => {
  const NETNS_NS = 'policy-netns';
  const netns = { network: { mode: 'netns', netnsPath: '/run/netns/shared' } };

  it('is refused to a sandbox editor in an unlabelled namespace, allowed once granted use-netns or the namespace is labelled', async () => {
    await plane.kubectl(['create', 'namespace', NETNS_NS]);
    for (const user of ['carol', 'dave']) {
      await plane.kubectl(['-n', NETNS_NS, 'create', 'serviceaccount', user]);
      await plane.kubectl([
        ...['-n', NETNS_NS, 'create', 'rolebinding', `${user}-edit`],
        ...['--clusterrole=kata-sandbox-edit', `--serviceaccount=${NETNS_NS}:${user}`],
      ]);
    }
    const carol = makeClients(await plane.serviceAccountCertConfig(NETNS_NS, 'carol'));
    const dave = makeClients(await plane.serviceAccountCertConfig(NETNS_NS, 'dave'));

    const r = await soon(() => refusal(create(carol, 'joins', undefined, NETNS_NS, netns)));
    expect(r.code).toBe(403);
    expect(r.message).toContain(POLICY_NETNS);
    expect(r.message).toContain(
      `spec.network.mode netns is allowed only in namespaces labelled kata.sandbox.io/allow-netns=true or to users granted verb use-netns on katasandboxes; namespace ${NETNS_NS} is not labelled and system:serviceaccount:${NETNS_NS}:carol is not granted it`,
    );
    // Other modes are everyone's.
    await create(carol, 'plain-net', undefined, NETNS_NS, { network: { mode: 'none' } });

    // Granted the verb (ClusterRole kata-sandbox-netns-user), carol may; dave still may not.
    await plane.kubectl([
      ...['-n', NETNS_NS, 'create', 'rolebinding', 'carol-netns'],
      ...['--clusterrole=kata-sandbox-netns-user', `--serviceaccount=${NETNS_NS}:carol`],
    ]);
    await soon(() => create(carol, 'joins', undefined, NETNS_NS, netns));
    expect((await refusal(create(dave, 'daves', undefined, NETNS_NS, netns))).code).toBe(403);

    // A cluster admin labels the namespace: anyone who may create sandboxes there may.
    await plane.kubectl(['label', 'namespace', NETNS_NS, 'kata.sandbox.io/allow-netns=true']);
    await soon(() => create(dave, 'daves', undefined, NETNS_NS, netns));
    expect((await get('daves', NETNS_NS)).spec['network']).toMatchObject(netns.network);
  });
});

describe('warm pools: each node agent writes only its own entry', () => {
  const POLICY_WARM = "ValidatingAdmissionPolicy 'kata-node-agent-warm-pools'";
  const pools = { group: GROUP, version: VERSION, plural: 'katawarmpools' };
  const entry = (node: string, ready: number) => ({ node, desired: 2, ready, booting: 0 });
  const pool = async () =>
    (await admin.custom.getClusterCustomObject({ ...pools, name: 'wp' })) as KataWarmPool;

  beforeAll(async () => {
    await admin.custom.createClusterCustomObject({
      ...pools,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'KataWarmPool',
        metadata: { name: 'wp' },
        spec: { vm: { memoryMiB: 512 }, replicasPerNode: 2 },
      },
    });
  });

  it('the schema refuses a pool holding too much memory per node, naming the field', async () => {
    const r = await refusal(
      admin.custom.createClusterCustomObject({
        ...pools,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'KataWarmPool',
          metadata: { name: 'huge' },
          spec: { vm: { memoryMiB: 65536 }, replicasPerNode: 16 },
        },
      }),
    );
    expect(r.code).toBe(422);
    expect(r.message).toContain('spec.replicasPerNode');
    expect(r.message).toContain('at most 262144 MiB');
  });

  it('node agents a and b each apply their own entry; both stay', async () => {
    await applyWarmPoolEntry(agentA, 'a', 'wp', entry('a', 1));
    await applyWarmPoolEntry(agentB, 'b', 'wp', entry('b', 2));
    await applyWarmPoolEntry(agentA, 'a', 'wp', entry('a', 2));
    const nodes = (await pool()).status?.nodes ?? [];
    expect(nodes.map((e) => [e.node, e.ready])).toEqual([
      ['a', 2],
      ['b', 2],
    ]);
  });

  it("node agent a may not write node b's entry, the conditions, or the spec", async () => {
    const other = await refusal(applyWarmPoolEntry(agentA, 'b', 'wp', entry('b', 0)));
    expect(other.code).toBe(403);
    expect(other.message).toContain(POLICY_WARM);
    expect(other.message).toContain('node agent of a may write only the status.nodes entry of its');
    const conditions = await refusal(
      agentA.custom.patchClusterCustomObjectStatus(
        {
          ...pools,
          name: 'wp',
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'KataWarmPool',
            metadata: { name: 'wp' },
            status: {
              conditions: [
                {
                  type: 'Ready',
                  status: 'True',
                  reason: 'Forged',
                  message: '',
                  lastTransitionTime: new Date().toISOString(),
                },
              ],
            },
          },
          fieldManager: 'kata-node-agent-a',
          force: true,
        },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      ),
    );
    expect(conditions.code).toBe(403);
    expect(conditions.message).toContain('status.conditions of a KataWarmPool are the controller');
    const spec = await refusal(
      agentA.custom.patchClusterCustomObject(
        {
          ...pools,
          name: 'wp',
          body: [{ op: 'replace', path: '/spec/replicasPerNode', value: 9 }],
        },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      ),
    );
    expect(spec.code).toBe(403);
    expect((await pool()).status?.nodes?.find((e) => e.node === 'b')?.ready).toBe(2);
  });

  it('a node agent without a node identity writes no entry; the controller writes Ready', async () => {
    const r = await refusal(applyWarmPoolEntry(agentNoNode, 'a', 'wp', entry('a', 0)));
    expect(r.code).toBe(403);
    expect(r.message).toContain('carry no node name');
    await warmPoolConditionsReconciler(
      { get: () => undefined } as unknown as Informer<KataWarmPool>,
      controller,
    )('wp');
    const seen = await pool();
    const informer = { get: () => seen } as unknown as Informer<KataWarmPool>;
    await warmPoolConditionsReconciler(informer, controller)('wp');
    expect((await pool()).status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'True',
      reason: 'Ready',
    });
  });
});

// The local control plane (hack/controlplane.sh) is a real kube-apiserver + etcd: version,
// kubectl, CRD validation, watch, server-side apply field ownership, optimistic concurrency, RBAC,
// bound ServiceAccount tokens, and the script's up/down/status contract.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import {
  ApiException,
  ApiextensionsV1Api,
  AuthenticationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  V1Lease,
  VersionApi,
  Watch,
  setHeaderOptions,
} from '@kubernetes/client-node';
import {
  adminKubeConfig,
  adminKubeConfigPath,
  CONTROLPLANE_SCRIPT,
  controlplane,
  freshNamespace,
  lastLine,
  serviceAccountKubeConfig,
  tokenKubeConfig,
} from './cluster.js';

const execFileAsync = promisify(execFile);

// testTimeout in a Jest project's config is not applied per project: set it here.
jest.setTimeout(120_000);

const GROUP = 'cptest.kata.sandbox.io';
const VERSION = 'v1';
const PLURAL = 'widgets';
const CRD_NAME = `${PLURAL}.${GROUP}`;

// Sent as a server-side apply patch, which the client does not pass through its model serializer:
// a plain object with the wire names (enum, x-kubernetes-validations).
const widgetCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: CRD_NAME },
  spec: {
    group: GROUP,
    scope: 'Namespaced',
    names: { plural: PLURAL, singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    versions: [
      {
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['size'],
                properties: {
                  size: { type: 'integer', minimum: 1, maximum: 10 },
                  color: { type: 'string', enum: ['red', 'blue'] },
                },
                'x-kubernetes-validations': [
                  { rule: "self.size <= 5 || self.color == 'red'", message: 'big widgets are red' },
                ],
              },
              status: {
                type: 'object',
                properties: {
                  observedBy: { type: 'string' },
                  phase: { type: 'string' },
                  vm: { type: 'object', properties: { pid: { type: 'integer' } } },
                },
              },
            },
          },
        },
      },
    ],
  },
};

/** The ApiException's HTTP code, or undefined for any other error. */
async function codeOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return 200;
  } catch (err) {
    if (err instanceof ApiException) return err.code;
    throw err;
  }
}

async function rejection(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) {
      const body = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
      return { code: err.code, message: String(body?.message ?? '') };
    }
    throw err;
  }
  throw new Error('expected the request to be rejected');
}

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function pidsOf(stateDir: string): number[] {
  return ['etcd', 'apiserver'].map((n) => Number(readFileSync(join(stateDir, `${n}.pid`), 'utf8')));
}

let kc: KubeConfig;
let ns: string;

beforeAll(async () => {
  kc = await adminKubeConfig();
  ns = await freshNamespace('cp-test');
});

describe('the server is real', () => {
  it('reports kube-apiserver v1.37 on /version', async () => {
    const info = await kc.makeApiClient(VersionApi).getCode();
    expect(info.gitVersion).toMatch(/^v1\.37\./);
    expect(info.minor).toBe('37');
  });

  it('answers kubectl get ns with the admin kubeconfig', async () => {
    const { stdout } = await execFileAsync('kubectl', [
      '--kubeconfig',
      await adminKubeConfigPath(),
      'get',
      'ns',
      '-o',
      'name',
    ]);
    expect(stdout.split('\n')).toEqual(
      expect.arrayContaining(['namespace/default', 'namespace/kube-system', `namespace/${ns}`]),
    );
  });
});

describe('core API behaviour through @kubernetes/client-node', () => {
  let crds: ApiextensionsV1Api;
  let custom: CustomObjectsApi;

  beforeAll(async () => {
    crds = kc.makeApiClient(ApiextensionsV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    // Server-side apply makes this idempotent when a reused plane already has the CRD.
    await crds.patchCustomResourceDefinition(
      { name: CRD_NAME, body: widgetCrd, fieldManager: 'controlplane-test', force: true },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
    const established = await eventually(
      () => crds.readCustomResourceDefinition({ name: CRD_NAME }),
      (crd) =>
        crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ??
        false,
    );
    expect(established.status?.conditions).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: 'Established', status: 'True' })]),
    );
    // The discovery of a new CRD's resource can lag Established by a moment.
    await eventually(
      () =>
        codeOf(
          custom.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: ns,
            plural: PLURAL,
          }),
        ),
      (code) => code === 200,
    );
  });

  afterAll(async () => {
    await crds?.deleteCustomResourceDefinition({ name: CRD_NAME }).catch(() => undefined);
  });

  const widget = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'Widget',
    metadata: { name },
    spec,
  });
  const create = (name: string, spec: Record<string, unknown>) =>
    custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      body: widget(name, spec),
    });

  it('creates a namespace-scoped Lease', async () => {
    const coord = kc.makeApiClient(CoordinationV1Api);
    const lease = await coord.createNamespacedLease({
      namespace: ns,
      body: {
        metadata: { name: 'holder' },
        spec: { holderIdentity: 'a', leaseDurationSeconds: 40 },
      },
    });
    expect(lease.metadata?.uid).toBeTruthy();
    const read = await coord.readNamespacedLease({ name: 'holder', namespace: ns });
    expect(read.spec?.holderIdentity).toBe('a');
  });

  it('creates a custom resource of the test CRD', async () => {
    const created = (await create('ok', { size: 3, color: 'blue' })) as {
      metadata: { uid: string; generation: number };
    };
    expect(created.metadata.uid).toBeTruthy();
    expect(created.metadata.generation).toBe(1);
  });

  it("rejects an invalid object with the server's own schema and CEL messages", async () => {
    const tooSmall = await rejection(create('too-small', { size: 0 }));
    expect(tooSmall.code).toBe(422);
    expect(tooSmall.message).toContain('spec.size: Invalid value: 0');
    expect(tooSmall.message).toContain('should be greater than or equal to 1');

    const badEnum = await rejection(create('bad-enum', { size: 1, color: 'green' }));
    expect(badEnum.code).toBe(422);
    expect(badEnum.message).toContain('spec.color: Unsupported value: "green"');

    const cel = await rejection(create('big-blue', { size: 9, color: 'blue' }));
    expect(cel.code).toBe(422);
    expect(cel.message).toContain('big widgets are red');

    const missing = await rejection(create('no-size', { color: 'red' }));
    expect(missing.code).toBe(422);
    expect(missing.message).toContain('spec.size: Required value');
  });

  it('streams add, update and delete to a watch', async () => {
    const seen: string[] = [];
    const watchErrors: unknown[] = [];
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    const list = (await custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
    })) as { metadata: { resourceVersion: string } };
    const abort = await new Watch(kc).watch(
      path,
      { resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true },
      (phase, obj: { metadata?: { name?: string } }) => {
        if (obj?.metadata?.name === 'watched') seen.push(phase);
      },
      (err) => {
        if (err && (err as Error).name !== 'AbortError') watchErrors.push(err);
      },
    );
    try {
      await create('watched', { size: 1 });
      await custom.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          name: 'watched',
          body: { spec: { size: 2 } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      await custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        name: 'watched',
      });
      await eventually(
        async () => seen,
        (s) => s.includes('DELETED'),
        10_000,
      );
    } finally {
      abort.abort();
    }
    expect(watchErrors).toEqual([]);
    expect(seen).toEqual(['ADDED', 'MODIFIED', 'DELETED']);
  });

  it('keeps each field manager’s status fields under server-side apply', async () => {
    await create('owned', { size: 2 });
    const apply = (manager: string, status: Record<string, unknown>) =>
      custom.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          name: 'owned',
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'Widget',
            metadata: { name: 'owned' },
            status,
          },
          fieldManager: manager,
          force: true,
        },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      );
    await apply('kata-controller', { phase: 'Scheduled', observedBy: 'controller' });
    await apply('kata-node-agent', { vm: { pid: 42 } });
    // The controller re-applies its own fields only: the node agent's stay.
    await apply('kata-controller', { phase: 'Running' });

    const got = (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      name: 'owned',
    })) as {
      status: Record<string, unknown>;
      metadata: { managedFields: { manager: string; subresource?: string; fieldsV1: unknown }[] };
    };
    // observedBy was dropped from the controller's apply, so it is gone; vm.pid is the agent's.
    expect(got.status).toEqual({ phase: 'Running', vm: { pid: 42 } });
    const managers = got.metadata.managedFields
      .filter((f) => f.subresource === 'status')
      .map((f) => f.manager)
      .sort();
    expect(managers).toEqual(['kata-controller', 'kata-node-agent']);
    const agentFields = got.metadata.managedFields.find((f) => f.manager === 'kata-node-agent');
    expect(JSON.stringify(agentFields?.fieldsV1)).toContain('f:pid');
    expect(JSON.stringify(agentFields?.fieldsV1)).not.toContain('f:phase');
  });

  it('answers an update with a stale resourceVersion with 409 Conflict', async () => {
    const coord = kc.makeApiClient(CoordinationV1Api);
    const stale: V1Lease = await coord.createNamespacedLease({
      namespace: ns,
      body: { metadata: { name: 'contended' }, spec: { holderIdentity: 'a' } },
    });
    await coord.replaceNamespacedLease({
      name: 'contended',
      namespace: ns,
      body: { ...stale, spec: { ...stale.spec, holderIdentity: 'b' } },
    });
    const lost = await rejection(
      coord.replaceNamespacedLease({
        name: 'contended',
        namespace: ns,
        body: { ...stale, spec: { ...stale.spec, holderIdentity: 'c' } },
      }),
    );
    expect(lost.code).toBe(409);
    expect(lost.message).toContain('the object has been modified');
  });
});

describe('RBAC', () => {
  it('forbids a minted ServiceAccount identity with no role, allows it with a Role', async () => {
    const sa = await serviceAccountKubeConfig(ns, 'reader');
    expect(sa.getCurrentUser()?.name).toBe(`system:serviceaccount:${ns}:reader`);
    const saCore = sa.makeApiClient(CoreV1Api);

    const denied = await rejection(saCore.listNamespacedConfigMap({ namespace: ns }));
    expect(denied.code).toBe(403);
    expect(denied.message).toContain(
      `"system:serviceaccount:${ns}:reader" cannot list resource "configmaps"`,
    );

    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: {
        metadata: { name: 'configmap-reader' },
        rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'configmap-reader' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'configmap-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: ns }],
      },
    });
    // The authorizer reads roles through an informer: allow a moment.
    const code = await eventually(
      () => codeOf(saCore.listNamespacedConfigMap({ namespace: ns })),
      (c) => c === 200,
    );
    expect(code).toBe(200);
    // The Role grants reads only, and only in its namespace.
    expect(
      await codeOf(
        saCore.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'x' } } }),
      ),
    ).toBe(403);
    expect(await codeOf(saCore.listNamespacedConfigMap({ namespace: 'default' }))).toBe(403);
  });
});

describe('ServiceAccount tokens', () => {
  it('issues a Pod-bound token whose requests carry the node name as user extra', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({
      namespace: ns,
      body: { metadata: { name: 'agent' } },
    });
    // No kubelet: the Pod is only an object bound to a node by spec.nodeName.
    const pod = await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'agent-pod' },
        spec: {
          nodeName: 'node-a',
          serviceAccountName: 'agent',
          containers: [{ name: 'main', image: 'registry.invalid/agent:1' }],
        },
      },
    });
    const tr = await core.createNamespacedServiceAccountToken({
      name: 'agent',
      namespace: ns,
      body: {
        spec: {
          audiences: [],
          expirationSeconds: 600,
          boundObjectRef: {
            apiVersion: 'v1',
            kind: 'Pod',
            name: 'agent-pod',
            uid: pod.metadata?.uid,
          },
        },
      },
    });
    const token = tr.status?.token ?? '';
    expect(token.split('.')).toHaveLength(3);
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as {
      'kubernetes.io': { pod: { name: string }; node?: { name: string } };
    };
    expect(claims['kubernetes.io'].pod.name).toBe('agent-pod');
    expect(claims['kubernetes.io'].node?.name).toBe('node-a');

    const review = await (
      await tokenKubeConfig(token)
    )
      .makeApiClient(AuthenticationV1Api)
      .createSelfSubjectReview({ body: {} });
    const user = review.status?.userInfo;
    expect(user?.username).toBe(`system:serviceaccount:${ns}:agent`);
    expect(user?.groups).toEqual(
      expect.arrayContaining(['system:serviceaccounts', `system:serviceaccounts:${ns}`]),
    );
    expect(user?.extra?.['authentication.kubernetes.io/node-name']).toEqual(['node-a']);
    expect(user?.extra?.['authentication.kubernetes.io/pod-name']).toEqual(['agent-pod']);
  });
});

describe('hack/controlplane.sh', () => {
  it('treats up on a running plane as a no-op that prints the same kubeconfig path', async () => {
    const path = await adminKubeConfigPath();
    const stateDir = dirname(path);
    const before = pidsOf(stateDir);
    // Through the script directly, for its stderr: it must have found the running plane, not
    // started (or restarted) one.
    const { stdout, stderr } = await execFileAsync(CONTROLPLANE_SCRIPT, ['up'], {
      env: { ...process.env, KATA_CP_DIR: stateDir },
      timeout: 120_000,
    });
    expect(lastLine(stdout)).toBe(path);
    expect(stderr).toMatch(/^controlplane: already up$/m);
    expect(stderr).not.toMatch(/^controlplane: up in /m);
    expect(stderr).not.toMatch(/start attempt/);
    expect(pidsOf(stateDir)).toEqual(before);
    expect(before.every(alive)).toBe(true);
    expect(await controlplane(['status'])).toBe(path);
  });

  it('brings a second plane (KATA_CP_DIR) up and down, leaving no process and no state', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'kata-cp-'));
    const stateDir = join(parent, 'plane');
    const env = { ...process.env, KATA_CP_DIR: stateDir };
    try {
      const path = await controlplane(['up'], env, 300_000);
      expect(path).toBe(join(stateDir, 'admin.kubeconfig'));
      expect(path).not.toBe(await adminKubeConfigPath());
      const pids = pidsOf(stateDir);
      expect(pids.every(alive)).toBe(true);
      const { stdout } = await execFileAsync('kubectl', [
        '--kubeconfig',
        path,
        'get',
        'ns',
        '-o',
        'name',
      ]);
      expect(stdout).toContain('namespace/default');
      // `up` again on it is a no-op too.
      expect(await controlplane(['up'], env)).toBe(path);
      expect(pidsOf(stateDir)).toEqual(pids);

      await controlplane(['down'], env, 120_000);
      expect(pids.some(alive)).toBe(false);
      expect(existsSync(stateDir)).toBe(false);
      expect(await codeOfStatus(env)).toBe(1);
      // The shared plane the other tests use is untouched.
      expect(await controlplane(['status'])).toBe(await adminKubeConfigPath());
    } finally {
      await controlplane(['down'], env, 120_000).catch(() => undefined);
      rmSync(parent, { recursive: true, force: true });
    }
  });
});

async function codeOfStatus(env: NodeJS.ProcessEnv): Promise<number> {
  try {
    await controlplane(['status'], env);
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

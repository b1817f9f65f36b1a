// A private control plane for tests that install deploy/ as a whole (the deploy, admission policy
// and lifecycle tests), and the identities a cluster would give the operator's Pods.
//
// Why private: deploy/ is cluster-wide. Its admission policy refuses the node label to everyone
// but the controller and refuses node agents without a Pod-bound token, which the other test
// files sharing the run's plane legitimately do (they label sandboxes by hand and run the node
// agent with a client certificate); and `kubectl delete -k deploy/` deletes the CRD (every
// sandbox of every namespace) and namespace kata-system, which stays Terminating for good on a
// plane without kube-controller-manager. So these tests start their own kube-apiserver + etcd
// with hack/controlplane.sh (KATA_CP_DIR: one plane per state folder, free ports) and stop it.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { controlplane, REPO_ROOT, withBearerToken } from './cluster.js';
import { newKubeConfig } from '../../src/kube/shared-agent.js';

const execFileAsync = promisify(execFile);

export const DEPLOY_DIR = path.join(REPO_ROOT, 'deploy');
export const SYSTEM_NS = 'kata-system';
export const CONTROLLER_USER = 'system:serviceaccount:kata-system:kata-controller';
export const NODE_AGENT_USER = 'system:serviceaccount:kata-system:kata-node-agent';

export interface PrivatePlane {
  dir: string;
  kubeconfig: string;
  env: NodeJS.ProcessEnv;
  /** kubectl against this plane (argv, never a shell); resolves to stdout. */
  kubectl(args: string[], input?: string, timeoutMs?: number): Promise<string>;
  admin(): KubeConfig;
  /** A kubeconfig with this plane's server and CA and a bearer token. */
  tokenConfig(token: string): KubeConfig;
  /** The same, written to a file (for processes started with --kubeconfig). */
  tokenConfigFile(token: string, name: string): string;
  /** A client certificate identity for ServiceAccount ns/sa: no token, so no Pod or node. */
  serviceAccountCertConfig(ns: string, sa: string): Promise<KubeConfig>;
  down(): Promise<void>;
}

export async function startPrivatePlane(prefix: string): Promise<PrivatePlane> {
  const dir = mkdtempSync(path.join(tmpdir(), `${prefix}-`));
  const env = { ...process.env, KATA_CP_DIR: path.join(dir, 'plane') };
  const kubeconfig = await controlplane(['up'], env, 10 * 60_000);
  if (!kubeconfig.startsWith('/')) throw new Error(`controlplane.sh up printed ${kubeconfig}`);
  const admin = (): KubeConfig => {
    const kc = newKubeConfig();
    kc.loadFromFile(kubeconfig);
    return kc;
  };
  const tokenConfig = (token: string): KubeConfig => withBearerToken(admin(), token);
  return {
    dir,
    kubeconfig,
    env,
    async kubectl(args, input, timeoutMs = 120_000) {
      const child = execFileAsync('kubectl', ['--kubeconfig', kubeconfig, ...args], {
        timeout: timeoutMs,
        maxBuffer: 32 * 1024 * 1024,
      });
      if (input !== undefined) child.child.stdin?.end(input);
      return (await child).stdout;
    },
    admin,
    tokenConfig,
    tokenConfigFile(token, name) {
      const file = path.join(dir, `${name}.kubeconfig`);
      writeFileSync(file, tokenConfig(token).exportConfig(), { mode: 0o600 });
      return file;
    },
    async serviceAccountCertConfig(ns, sa) {
      const kc = newKubeConfig();
      kc.loadFromFile(await controlplane(['kubeconfig-for', ns, sa], env, 60_000));
      return kc;
    },
    async down() {
      await controlplane(['down'], env, 120_000).catch(() => '');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * `kubectl apply --server-side -k deploy/`, then waits for the CRD to be established and for
 * deploy/'s admission policies to be in force.
 */
export async function applyDeploy(plane: PrivatePlane): Promise<string> {
  const out = await plane.kubectl(['apply', '--server-side', '-k', DEPLOY_DIR]);
  await plane.kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/katasandboxes.kata.sandbox.io',
  ]);
  await waitForPoliciesInForce(plane);
  return out;
}

const PROBE = 'kata-test-policy-probe';

/**
 * The API server enforces a ValidatingAdmissionPolicy only once its policy source has rebuilt
 * its snapshot (about every second, from the policy and binding informers at once), so right
 * after `apply` a request may pass a policy that is already stored. A probe policy and binding
 * created after deploy/'s are in a snapshot only with every policy and binding created before
 * them (each informer sees its objects in order), so once the probe refuses, all of deploy/'s
 * are in force. The probe is removed again.
 */
async function waitForPoliciesInForce(plane: PrivatePlane, timeoutMs = 60_000): Promise<void> {
  const manifest = [
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: PROBE },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [''],
              apiVersions: ['v1'],
              resources: ['configmaps'],
              operations: ['CREATE'],
            },
          ],
        },
        matchConditions: [{ name: 'is-probe', expression: `object.metadata.name == '${PROBE}'` }],
        validations: [{ expression: 'false', message: PROBE }],
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: PROBE },
      spec: { policyName: PROBE, validationActions: ['Deny'] },
    },
  ];
  const objects = ['validatingadmissionpolicybinding', 'validatingadmissionpolicy'].map(
    (kind) => `${kind}/${PROBE}`,
  );
  await plane.kubectl(
    ['create', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: manifest }),
  );
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const refused = await plane
        .kubectl(['create', 'configmap', PROBE, '-n', 'default', '--dry-run=server'])
        .then(
          () => false,
          (err: unknown) => String((err as { stderr?: string }).stderr ?? err).includes(PROBE),
        );
      if (refused) return;
      if (Date.now() > deadline) {
        throw new Error(`deploy/'s admission policies not in force after ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await plane.kubectl(['delete', '--ignore-not-found', ...objects]);
  }
}

/**
 * What a kubelet-run Pod of `serviceAccount` on `node` would hold: a Node object, a Pod bound to
 * it (never run: there is no kubelet), and a token from the TokenRequest API bound to that Pod,
 * into which the API server puts the node (user extra authentication.kubernetes.io/node-name).
 */
export async function podBoundToken(
  plane: PrivatePlane,
  serviceAccount: string,
  podName: string,
  node: string,
): Promise<string> {
  const core = plane.admin().makeApiClient(CoreV1Api);
  await core.createNode({ body: { metadata: { name: node } } }).catch((err: unknown) => {
    if ((err as { code?: number }).code !== 409) throw err;
  });
  const pod = await core.createNamespacedPod({
    namespace: SYSTEM_NS,
    body: {
      metadata: { name: podName },
      spec: {
        serviceAccountName: serviceAccount,
        nodeName: node,
        containers: [{ name: 'main', image: 'kata-sandbox-operator' }],
      },
    },
  });
  const req = await core.createNamespacedServiceAccountToken({
    namespace: SYSTEM_NS,
    name: serviceAccount,
    body: {
      spec: {
        audiences: [],
        expirationSeconds: 3600,
        boundObjectRef: {
          apiVersion: 'v1',
          kind: 'Pod',
          name: podName,
          uid: pod.metadata?.uid ?? '',
        },
      },
    },
  });
  const token = req.status?.token;
  if (!token) throw new Error(`TokenRequest for ${serviceAccount} gave no token`);
  return token;
}

/** The identity the API server sees for a kubeconfig (SelfSubjectReview). */
export async function whoAmI(
  plane: PrivatePlane,
  kubeconfigFile: string,
): Promise<{ username: string; extra: Record<string, string[]> }> {
  const { stdout } = await execFileAsync(
    'kubectl',
    ['--kubeconfig', kubeconfigFile, 'auth', 'whoami', '-o', 'json'],
    { timeout: 30_000 },
  );
  const info = (
    JSON.parse(stdout) as {
      status: { userInfo: { username: string; extra?: Record<string, string[]> } };
    }
  ).status.userInfo;
  return { username: info.username, extra: info.extra ?? {} };
}

// The aggregated API on the test control plane: the real kata-api (bundled from src/, run as a
// process with ServiceAccount kata-system/kata-api's identity and deploy/'s RBAC) registered with
// deploy/'s APIService. The aggregator reaches it through a Service of type ExternalName
// `localhost` — the one Service kind kube-apiserver resolves to a loopback address (Endpoints may
// not point at loopback); deploy/'s Service selects the Deployment's Pods instead.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import {
  REPO_ROOT,
  adminKubeConfig,
  adminKubeConfigPath,
  controlplane,
  serviceAccountKubeConfigPath,
} from './cluster.js';
import {
  bundleEntry,
  eventually,
  kubectl,
  spawnComponent,
  type RunningProcess,
} from './controller-harness.js';
import { nodeLeaseName } from '../../src/crds/index.js';
import { STREAM_TOKEN_AUDIENCE } from '../../src/subresources/contract.js';
import { freePort } from './metrics-harness.js';

const execFileAsync = promisify(execFile);
export const API_SERVICE = 'v1alpha1.subresources.kata.sandbox.io';

export interface RunningKataApi extends RunningProcess {
  port: number;
}

/** A bound token of ServiceAccount kata-system/<sa> for `audiences`, as kubelet would project it. */
export async function serviceAccountToken(sa: string, audiences: string[]): Promise<string> {
  const core = (await adminKubeConfig()).makeApiClient(CoreV1Api);
  const r = await core.createNamespacedServiceAccountToken({
    namespace: 'kata-system',
    name: sa,
    body: { spec: { audiences, expirationSeconds: 3600 } },
  });
  const token = r.status?.token;
  if (!token) throw new Error(`TokenRequest for ${sa} gave no token`);
  return token;
}

/** deploy/'s APIService, its Service swapped for an ExternalName one on `port`. */
export async function registerApiService(port: number): Promise<void> {
  const docs = parseAllDocuments(
    readFileSync(path.join(REPO_ROOT, 'deploy/kata-api/apiservice.yaml'), 'utf8'),
  );
  const svc = docs[0]?.toJS() as { spec: { service: { port: number } } };
  svc.spec.service.port = port;
  await kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], JSON.stringify(svc));
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'kata-api', namespace: 'kata-system' },
    spec: { type: 'ExternalName', externalName: 'localhost', ports: [{ name: 'https', port }] },
  };
  await kubectl(
    ['apply', '--server-side', '--force-conflicts', '-f', '-'],
    JSON.stringify(service),
  );
}

export async function unregisterApiService(): Promise<void> {
  await kubectl(['delete', 'apiservice', API_SERVICE, '--ignore-not-found']);
  await kubectl(['-n', 'kata-system', 'delete', 'service', 'kata-api', '--ignore-not-found']);
  await kubectl([
    '-n',
    'kata-system',
    'delete',
    'secret',
    'kata-api-serving-cert',
    '--ignore-not-found',
  ]);
}

export async function startKataApi(
  workDir: string,
  streamToken: string,
  port: number,
): Promise<RunningKataApi> {
  const bundle = await bundleEntry('src/kata-api/main.ts', 'kata-api');
  const kubeconfig = await serviceAccountKubeConfigPath('kata-system', 'kata-api');
  const tokenFile = path.join(workDir, 'stream-token');
  writeFileSync(tokenFile, streamToken, { mode: 0o600 });
  const proc = spawnComponent(
    bundle,
    [
      ...['--kubeconfig', kubeconfig, '--bind-address', '127.0.0.1', '--port', String(port)],
      ...['--stream-token-file', tokenFile],
    ],
    path.join(workDir, 'kata-api.log'),
  );
  // Serving, or dead with its reason in the log.
  const logFile = path.join(workDir, 'kata-api.log');
  await eventually(
    'kata-api serving',
    async () => {
      const text = readFileSync(logFile, 'utf8');
      if (proc.child.exitCode !== null) throw new Error(`kata-api exited: ${text.slice(-2000)}`);
      return text.includes('serving subresources.kata.sandbox.io') ? true : undefined;
    },
    60_000,
  ).catch(async (err: unknown) => {
    await proc.stop();
    throw err;
  });
  return { ...proc, port };
}

/**
 * kata-api as the aggregator reaches it: a free port registered as the APIService's, kata-api
 * started there with its stream token, and the APIService Available. The caller unregisters the
 * APIService and stops kata-api when done; a failure on the way undoes both.
 */
export async function serveKataApi(workDir: string): Promise<RunningKataApi> {
  const port = await freePort();
  await registerApiService(port);
  let api: RunningKataApi | undefined;
  try {
    api = await startKataApi(
      workDir,
      await serviceAccountToken('kata-api', [STREAM_TOKEN_AUDIENCE]),
      port,
    );
    await kubectl(
      ['wait', '--for=condition=Available', '--timeout=120s', `apiservice/${API_SERVICE}`],
      undefined,
      130_000,
    );
    return api;
  } catch (err) {
    await api?.stop();
    await unregisterApiService().catch(() => undefined);
    throw err;
  }
}

/** A client certificate identity (CN, groups) from the plane's client CA. */
export function userKubeConfig(file: string, user: string, groups: string[] = []): Promise<string> {
  return controlplane(['kubeconfig-for-user', file, user, ...groups]);
}

export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program; resolves with its exit code and output whatever the code. */
export async function runProgram(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 60_000,
): Promise<Outcome> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, { env, timeout: timeoutMs });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === 'number' ? e.code : -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    };
  }
}

/** The node agent's Lease as it writes it: fresh, with its stream endpoint's annotations. */
export async function writeNodeLease(
  node: string,
  annotations: Record<string, string>,
): Promise<void> {
  const lease = {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: nodeLeaseName(node), namespace: 'kata-system', annotations },
    spec: {
      holderIdentity: `kata-node-agent-${node}`,
      leaseDurationSeconds: 3600,
      // MicroTime: six fractional digits.
      renewTime: new Date().toISOString().replace(/Z$/, '000Z'),
    },
  };
  await kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], JSON.stringify(lease));
}

export interface RawResponse {
  status: number;
  body: string;
}

export interface RawRequest {
  port: number;
  path: string;
  /** Verifies kata-api's serving certificate. */
  ca: string;
  headers?: Record<string, string>;
  /** A client certificate to present. */
  cert?: string;
  key?: string;
}

/** One HTTPS request straight to kata-api (around the aggregator). */
export function rawGet(r: RawRequest): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: r.port,
        path: r.path,
        ca: r.ca,
        servername: 'kata-api.kata-system.svc',
        headers: r.headers ?? {},
        agent: false,
        timeout: 10_000,
        ...(r.cert && { cert: r.cert, key: r.key }),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** The plane's PKI folder (front-proxy and client CAs, certificates). */
export async function planePki(): Promise<string> {
  return path.join(path.dirname(await adminKubeConfigPath()), 'pki');
}

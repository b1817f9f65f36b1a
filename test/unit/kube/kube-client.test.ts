import { afterAll, describe, expect, it } from '@jest/globals';
import { ApiException, type KubeConfig } from '@kubernetes/client-node';
import {
  callApi,
  isAlreadyExists,
  isConflict,
  isGone,
  isInvalid,
  isNotFound,
  KubeApiError,
  loadKubeConfig,
  loadKubeConfigStrict,
  statusCode,
  toKubeError,
} from '../../../src/kube/kube-client.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const status = (code: number, reason: string, message: string) =>
  new ApiException(
    code,
    'HTTP-Code: x',
    JSON.stringify({ kind: 'Status', code, reason, message }),
    {},
  );

describe('toKubeError', () => {
  it('pulls the Status message and reason out of the raw string body', () => {
    const err = toKubeError(status(404, 'NotFound', 'leases "x" not found'), 'get lease x');
    expect(err).toBeInstanceOf(KubeApiError);
    const k = err as KubeApiError;
    expect(k.code).toBe(404);
    expect(k.reason).toBe('NotFound');
    expect(k.message).toBe('get lease x: leases "x" not found (HTTP 404)');
    expect(k.body).toMatchObject({ kind: 'Status' });
  });

  it('keeps a non-JSON body as the message', () => {
    const err = toKubeError(new ApiException(502, 'x', 'bad gateway', {})) as KubeApiError;
    expect(err.message).toBe('bad gateway (HTTP 502)');
    expect(err.reason).toBeUndefined();
  });

  it('passes other errors through, adding context when asked', () => {
    const e = new Error('ECONNREFUSED');
    expect(toKubeError(e)).toBe(e);
    expect(toKubeError(e, 'list').message).toBe('list: ECONNREFUSED');
    expect(toKubeError('weird').message).toBe('weird');
  });
});

describe('status predicates', () => {
  it('detect codes on ApiException, KubeApiError and raw watch errors', () => {
    expect(isNotFound(status(404, 'NotFound', ''))).toBe(true);
    expect(isConflict(new KubeApiError(409, 'c', 'Conflict', {}))).toBe(true);
    expect(isGone(Object.assign(new Error('Gone'), { statusCode: 410 }))).toBe(true);
    expect(isInvalid(status(422, 'Invalid', ''))).toBe(true);
    expect(statusCode(new Error('x'))).toBeUndefined();
    expect(isNotFound(undefined)).toBe(false);
  });

  it('tells AlreadyExists from other conflicts', () => {
    expect(isAlreadyExists(status(409, 'AlreadyExists', 'exists'))).toBe(true);
    expect(isAlreadyExists(status(409, 'Conflict', 'modified'))).toBe(false);
  });
});

describe('callApi', () => {
  it('returns the result and converts failures', async () => {
    await expect(callApi('ok', async () => 7)).resolves.toBe(7);
    await expect(
      callApi('get x', async () => {
        throw status(403, 'Forbidden', 'no');
      }),
    ).rejects.toMatchObject({ code: 403, message: 'get x: no (HTTP 403)' });
  });

  it('times out a call that hangs', async () => {
    await expect(
      callApi('hang', () => new Promise(() => undefined), { timeoutMs: 5 }),
    ).rejects.toThrow('hang: timed out after 5 ms');
  });

  it('rejects with the abort reason, unwrapped', async () => {
    const ctl = new AbortController();
    const p = callApi('hang', () => new Promise(() => undefined), { signal: ctl.signal });
    const reason = new Error('shutting down');
    ctl.abort(reason);
    await expect(p).rejects.toBe(reason);
    await expect(callApi('x', async () => 1, { signal: ctl.signal })).rejects.toBe(reason);
  });
});

describe('loadKubeConfig', () => {
  const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`;

  it('prefers an explicit path, then KUBECONFIG', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kc-'));
    const file = join(dir, 'config');
    writeFileSync(file, kubeconfig);
    expect(loadKubeConfig({ path: file, env: {} }).getCurrentCluster()?.server).toBe(
      'https://127.0.0.1:6443',
    );
    expect(loadKubeConfig({ env: { KUBECONFIG: file } }).getCurrentCluster()?.name).toBe('c');
  });

  it('uses in-cluster config when the service account is present', () => {
    const kc = withServiceEnv(() => loadKubeConfig({ env: {}, inCluster: true }));
    expectInCluster(kc);
  });
});

// client-node's in-cluster loader reads the service address from process.env itself.
function withServiceEnv<T>(fn: () => T): T {
  const saved = [process.env.KUBERNETES_SERVICE_HOST, process.env.KUBERNETES_SERVICE_PORT];
  process.env.KUBERNETES_SERVICE_HOST = '10.0.0.1';
  process.env.KUBERNETES_SERVICE_PORT = '443';
  try {
    return fn();
  } finally {
    for (const [k, v] of [
      ['KUBERNETES_SERVICE_HOST', saved[0]],
      ['KUBERNETES_SERVICE_PORT', saved[1]],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** The in-cluster path: the service address from the environment, the Pod's token file. */
function expectInCluster(kc: KubeConfig): void {
  expect(kc.getCurrentCluster()).toMatchObject({
    name: 'inCluster',
    server: 'https://10.0.0.1:443',
    caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
  });
  expect(kc.getCurrentUser()?.authProvider?.config?.tokenFile).toBe(
    '/var/run/secrets/kubernetes.io/serviceaccount/token',
  );
}

describe('loadKubeConfigStrict (the node agent)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kc-strict-'));
  const file = join(dir, 'config');
  const other = join(dir, 'admin');
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters: [{name: explicit, cluster: {server: 'https://127.0.0.1:6443'}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: explicit, user: u}}]
current-context: x
`,
  );
  writeFileSync(other, readFileSync(file, 'utf8').replaceAll('explicit', 'admin'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads the explicit path, ignoring KUBECONFIG', () => {
    const kc = loadKubeConfigStrict(file, { KUBECONFIG: other });
    expect(kc.getCurrentCluster()?.name).toBe('explicit');
  });

  it('is in-cluster in a Pod (KUBERNETES_SERVICE_HOST set) without a path', () => {
    const kc = withServiceEnv(() => loadKubeConfigStrict(undefined, process.env));
    expectInCluster(kc);
  });

  it('outside a Pod without a path refuses, naming the flag, even with KUBECONFIG or HOME set', () => {
    expect(() => loadKubeConfigStrict(undefined, { KUBECONFIG: other, HOME: dir })).toThrow(
      /^--kubeconfig: required outside a Pod/,
    );
  });
});

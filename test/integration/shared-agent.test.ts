// Every Kubernetes client shares one keep-alive pool per identity (src/kube/shared-agent.ts),
// counted at the TCP level by a relay in front of the real API server; a rotated client
// certificate is picked up by the next request, on a new connection, as the new identity.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { requestJson } from '../../src/kube/kube-request.js';
import { newKubeConfig, pooledConnections } from '../../src/kube/shared-agent.js';
import { adminKubeConfig, freshNamespace, serviceAccountKubeConfig } from './cluster.js';
import { Relay, throughRelay } from './tcp-relay.js';

let admin: KubeConfig;
let relay: Relay;
let ns: string;
let dir: string;

beforeAll(async () => {
  admin = await adminKubeConfig();
  ns = await freshNamespace('shared-agent');
  const server = new URL(admin.getCurrentCluster()?.server ?? '');
  relay = new Relay(server.hostname, Number(server.port || 443));
  await relay.start();
  dir = mkdtempSync(path.join(tmpdir(), 'kata-shared-agent-'));
});

afterAll(async () => {
  await relay?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `n` calls of each kind the project makes: a generated client's and a raw JSON request. */
async function calls(kc: KubeConfig, n: number, inFlight: number): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  for (let done = 0; done < n; done += inFlight) {
    await Promise.all(
      Array.from({ length: Math.min(inFlight, n - done) }, (_, i) =>
        i % 2 === 0
          ? core.listNamespacedConfigMap({ namespace: ns })
          : requestJson(kc, `/api/v1/namespaces/${ns}/configmaps`),
      ),
    );
  }
}

const whoami = async (kc: KubeConfig): Promise<string | undefined> => {
  const review = await requestJson<{ status?: { userInfo?: { username?: string } } }>(
    kc,
    '/apis/authentication.k8s.io/v1/selfsubjectreviews',
    { method: 'POST', body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } },
  );
  return review.status?.userInfo?.username;
};

describe('one keep-alive pool per identity', () => {
  it('200 calls one at a time use one connection; 200 calls 8 at a time at most 8', async () => {
    const kc = throughRelay(admin, relay);
    const before = { relay: relay.accepted, pooled: pooledConnections() };
    await calls(kc, 200, 1);
    expect(relay.accepted - before.relay).toBe(1);
    await calls(kc, 200, 8);
    expect(relay.accepted - before.relay).toBeLessThanOrEqual(8);
    // The pool's own count agrees with what the server side saw.
    expect(pooledConnections() - before.pooled).toBe(relay.accepted - before.relay);
  });

  it('a KubeConfig made without the pool opens a connection per call (what client-node does alone)', async () => {
    // eslint-disable-next-line no-restricted-syntax -- the unpooled baseline, on purpose
    const plain = new KubeConfig();
    plain.loadFromString(throughRelay(admin, relay).exportConfig());
    const before = relay.accepted;
    await calls(plain, 20, 1);
    expect(relay.accepted - before).toBe(20);
  });

  it('two KubeConfigs of one identity share the pool; another identity gets its own', async () => {
    const a = throughRelay(admin, relay);
    const b = throughRelay(admin, relay);
    const sa = throughRelay(await serviceAccountKubeConfig(ns, 'pool-test'), relay);
    await calls(a, 2, 1); // warm: a pool with one idle connection
    const before = relay.accepted;
    await calls(b, 10, 1);
    expect(relay.accepted - before).toBe(0);
    await whoami(sa);
    await whoami(sa);
    expect(relay.accepted - before).toBe(1);
  });

  it('a client certificate rotated on disk is used by the next call, on a new connection; the old one closes', async () => {
    const saKc = await serviceAccountKubeConfig(ns, 'rotated');
    const material = (kc: KubeConfig) => ({
      cert: Buffer.from(kc.getCurrentUser()?.certData ?? '', 'base64'),
      key: Buffer.from(kc.getCurrentUser()?.keyData ?? '', 'base64'),
    });
    const certFile = path.join(dir, 'client.crt');
    const keyFile = path.join(dir, 'client.key');
    const write = ({ cert, key }: { cert: Buffer; key: Buffer }) => {
      writeFileSync(certFile, cert);
      writeFileSync(keyFile, key, { mode: 0o600 });
    };
    write(material(admin));
    const kc = newKubeConfig();
    const relayed = throughRelay(admin, relay);
    kc.loadFromOptions({
      clusters: relayed.clusters,
      users: [{ name: 'rotating', certFile, keyFile }],
      contexts: [
        { name: 'rotating', cluster: relayed.getCurrentCluster()!.name, user: 'rotating' },
      ],
      currentContext: 'rotating',
    });
    const before = relay.accepted;
    const first = await whoami(kc);
    expect(await whoami(kc)).toBe(first);
    expect(relay.accepted - before).toBe(1);
    const open = relay.connections;

    write(material(saKc));
    expect(await whoami(kc)).toBe(`system:serviceaccount:${ns}:rotated`);
    expect(first).not.toBe(`system:serviceaccount:${ns}:rotated`);
    expect(relay.accepted - before).toBe(2);
    // The retired pool's idle connection was closed, not left open beside the new one.
    await new Promise((r) => setTimeout(r, 200));
    expect(relay.connections).toBeLessThanOrEqual(open);
  });
});

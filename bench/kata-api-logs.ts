// Log streaming through the whole API chain: kubectl (the client `kubectl kata logs` runs) →
// kube-apiserver's aggregation layer → kata-api (process, its RBAC from deploy/) → the node
// agent's stream endpoint (its StreamServer, in this process, real TokenReview) → the container's
// log file. Prints: follow latency (a line appended to the log file on the host → that line on
// kubectl's stdout) and read throughput of a 10 MiB log (the default rotation size). What the guest
// adds before the line reaches the file (its output pipe and the agent's ReadStdout) is not in
// these figures. Ends with one line `bench-result {json}`.
// Usage: node kata-api-logs.mjs [FOLLOW_SAMPLES=50] [READS=3]   (run from the repository root,
// with a control plane up: hack/controlplane.sh up)
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT, adminKubeConfig, freshNamespace } from '../test/integration/cluster.js';
import { installControllerPrereqs, kubectl } from '../test/integration/controller-harness.js';
import { installNodeAgentRbac } from '../test/e2e/node-agent-harness.js';
import {
  unregisterApiService,
  userKubeConfig,
  writeNodeLease,
  serveKataApi,
} from '../test/integration/kata-api-harness.js';
import { StreamServer } from '../src/node-agent/stream/stream-server.js';
import { endpointUrl, streamAnnotations } from '../src/node-agent/stream/stream-endpoint.js';
import { selfSignedCertificate } from '../src/observability/self-signed-cert.js';
import { reviewBoundToken } from '../src/kube/access-reviews.js';
import { createLogger } from '../src/observability/logger.js';

const FOLLOW_SAMPLES = Number(process.argv[2] ?? 50);
const READS = Number(process.argv[3] ?? 3);
const NODE = `bench-kapi-${process.pid}`;
const SUB = '/apis/subresources.kata.sandbox.io/v1alpha1';

const pct = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))] ?? NaN;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(tmpdir(), 'kata-api-bench-'));
  await installControllerPrereqs();
  await installNodeAgentRbac();
  for (const f of ['deploy/rbac/kata-api.yaml', 'deploy/rbac/user-roles.yaml']) {
    await kubectl(['apply', '--server-side', '-f', path.join(REPO_ROOT, f)]);
  }
  const ns = await freshNamespace('kapi-bench');
  await kubectl([
    '-n',
    ns,
    'create',
    'rolebinding',
    'v',
    '--clusterrole=kata-sandbox-view',
    '--user=kapi-bench',
  ]);
  const kc = await userKubeConfig('kapi-bench', 'kapi-bench');
  const body = {
    apiVersion: 'kata.sandbox.io/v1alpha1',
    kind: 'KataSandbox',
    metadata: { name: 'b', namespace: ns, labels: { 'kata.sandbox.io/node': NODE } },
    spec: { containers: [{ name: 'main', image: 'busybox:1.36' }] },
  };
  await kubectl(['apply', '--server-side', '-f', '-'], JSON.stringify(body));
  const logDir = path.join(work, 'logs');
  mkdirSync(logDir);
  const file = path.join(logDir, 'main.log');
  writeFileSync(file, '');
  const state = { state: 'Running' as 'Running' | 'Exited' };
  const cert = selfSignedCertificate({ commonName: 'bench', hosts: ['127.0.0.1'] });
  const admin = await adminKubeConfig();
  const node = new StreamServer({
    port: 0,
    host: '127.0.0.1',
    cert: cert.certPem,
    key: cert.keyPem,
    reviewToken: (t, a) => reviewBoundToken(admin, t, a),
    sandbox: () => ({
      logDir,
      containerNames: ['main'],
      container: () => ({ created: true, started: true, state: state.state, restartCount: 0 }),
      ended: () => false,
    }),
    logger: createLogger('bench-node-agent', 'warn'),
  });
  const url = endpointUrl('127.0.0.1', await node.start());
  await writeNodeLease(NODE, streamAnnotations(url, cert.certPem));
  const api = await serveKataApi(work);
  try {
    const logPath = `${SUB}/namespaces/${ns}/katasandboxes/b/log`;

    // Follow latency: one line at a time, the next only after the last arrived.
    const child = spawn('kubectl', ['--kubeconfig', kc, 'get', '--raw', `${logPath}?follow=true`]);
    let out = '';
    let waiter: (() => void) | undefined;
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      waiter?.();
    });
    const arrived = (line: string) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (out.includes(line)) {
            waiter = undefined;
            resolve();
          }
        };
        waiter = check;
        check();
      });
    appendFileSync(file, 'warm-up\n');
    await arrived('warm-up\n');
    const latencies: number[] = [];
    for (let i = 0; i < FOLLOW_SAMPLES; i++) {
      const line = `sample ${i}\n`;
      const t0 = performance.now();
      appendFileSync(file, line);
      await arrived(line);
      latencies.push(performance.now() - t0);
      await sleep(50);
    }
    state.state = 'Exited';
    await new Promise((r) => child.once('exit', r));

    // Throughput: a whole 10 MiB log, read with `kubectl get --raw`.
    const size = 10 * 1024 * 1024;
    const text = 'x'.repeat(99) + '\n';
    writeFileSync(file, text.repeat(Math.floor(size / text.length)));
    const mibps: number[] = [];
    for (let i = 0; i < READS; i++) {
      const t0 = performance.now();
      const bytes = await new Promise<number>((resolve, reject) => {
        const c = spawn('kubectl', ['--kubeconfig', kc, 'get', '--raw', logPath]);
        let n = 0;
        c.stdout.on('data', (b: Buffer) => (n += b.length));
        c.once('error', reject);
        c.once('exit', (code) =>
          code === 0 ? resolve(n) : reject(new Error(`kubectl exit ${code}`)),
        );
      });
      const s = (performance.now() - t0) / 1000;
      if (bytes < size - text.length) throw new Error(`read ${bytes} bytes of ${size}`);
      mibps.push(bytes / 1024 / 1024 / s);
    }
    const f = (v: number) => v.toFixed(1);
    console.log(
      `follow latency (host log append → kubectl stdout), ${FOLLOW_SAMPLES} samples: ` +
        `p50 ${f(pct(latencies, 0.5))} ms  p99 ${f(pct(latencies, 0.99))} ms  min ${f(Math.min(...latencies))} ms  max ${f(Math.max(...latencies))} ms`,
    );
    console.log(
      `log read throughput (10 MiB through kubectl get --raw), ${READS} reads: ` +
        `median ${f(pct(mibps, 0.5))} MiB/s  min ${f(Math.min(...mibps))}  max ${f(Math.max(...mibps))}`,
    );
    console.log(
      `bench-result ${JSON.stringify({
        followLatencyMs: { p50: pct(latencies, 0.5), p99: pct(latencies, 0.99) },
        readMiBps: { median: pct(mibps, 0.5) },
      })}`,
    );
  } finally {
    await api.stop();
    await node.close();
    await unregisterApiService();
    await kubectl([
      '-n',
      'kata-system',
      'delete',
      'lease',
      `kata-node-${NODE}`,
      '--ignore-not-found',
    ]);
    await kubectl(['-n', ns, 'delete', 'ksb', '--all', '--wait=false']).catch(() => '');
    await kubectl(['delete', 'namespace', ns, '--wait=false']);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

// The metrics of both components, checked by Prometheus' own tools and served as a cluster serves
// them: the real kata-controller and kata-node-agent run as processes against the run's control
// plane (with their ServiceAccount identities and RBAC from deploy/rbac), each on HTTPS with
// /metrics behind TokenReview + SubjectAccessReview (the controller with the certificate it makes
// itself, the node agent with one from files). Real ServiceAccount tokens from the TokenRequest
// API show who gets what: a ServiceAccount bound to ClusterRole kata-metrics-reader
// (deploy/monitoring/) 200, one without it 403, a garbage or no token 401; /healthz and /readyz stay
// open. `promtool check metrics` lints each /metrics, and a real Prometheus (Debian `prometheus`)
// started here on 127.0.0.1 scrapes both over HTTPS with a bearer token file: `up == 1` for each.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import {
  REPO_ROOT,
  adminKubeConfig,
  adminKubeConfigPath,
  freshNamespace,
  serviceAccountKubeConfigPath,
} from './cluster.js';
import {
  bundleEntry,
  eventually,
  grantElectionLease,
  installControllerPrereqs,
  kubectl,
  spawnComponent,
} from './controller-harness.js';
import {
  installNodeAgentRbac,
  startNodeAgent,
  type RunningNodeAgent,
} from '../e2e/node-agent-harness.js';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { selfSignedCertificate } from '../../src/observability/self-signed-cert.js';
import {
  freePort,
  httpGet,
  httpsGet,
  ownProblems,
  promtoolCheck,
  startPrometheus,
  type RunningPrometheus,
} from './metrics-harness.js';

jest.setTimeout(300_000);

const execFileAsync = promisify(execFile);

const ELECTION_ID = `kata-controller-metrics-${process.pid}`;
const NODE = `metrics-${process.pid}`;
const READER_BINDING = `kata-metrics-reader-test-${process.pid}`;

let work: string;
let ns: string;
let controller: ChildProcess | undefined;
let agent: RunningNodeAgent | undefined;
let prometheus: RunningPrometheus | undefined;
let controllerPort = 0;
let agentPort = 0;
/** The node agent's serving certificate (from files): the CA its clients verify it with. */
let agentCa = '';
/** A token of ServiceAccount `scraper` (bound to kata-metrics-reader) and of `nobody` (not). */
let scraperToken = '';
let nobodyToken = '';

const requestToken = async (sa: string): Promise<string> => {
  const core = (await adminKubeConfig()).makeApiClient(CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({
    namespace: ns,
    name: sa,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const token = tr.status?.token;
  if (!token) throw new Error(`TokenRequest for ${ns}/${sa} gave no token`);
  return token;
};

interface Component {
  name: string;
  port: () => number;
  ca: () => string | undefined;
  series: string;
}
const COMPONENTS: Component[] = [
  {
    name: 'kata-controller',
    port: () => controllerPort,
    ca: () => undefined,
    series: 'kata_controller_leader',
  },
  {
    name: 'kata-node-agent',
    port: () => agentPort,
    ca: () => agentCa,
    series: 'kata_node_vm_boot_duration_seconds',
  },
];

const get = (c: Component, p: string, token?: string, agentOpt?: Agent) =>
  httpsGet(`https://127.0.0.1:${c.port()}${p}`, {
    ...(token && { token }),
    ...(c.ca() && { ca: c.ca() }),
    ...(agentOpt && { agent: agentOpt }),
  });

const scrape = async (c: Component): Promise<string> => {
  const r = await get(c, '/metrics', scraperToken);
  if (r.status !== 200) throw new Error(`${c.name} /metrics answered ${r.status}: ${r.body}`);
  return r.body;
};

/** The API server's count of create requests for a review resource (its own /metrics). */
const reviewRequests = async (resource: string): Promise<number> => {
  const { stdout: text } = await execFileAsync(
    'kubectl',
    ['--kubeconfig', await adminKubeConfigPath(), 'get', '--raw', '/metrics'],
    { timeout: 30_000, maxBuffer: 256 * 1024 * 1024 },
  );
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    if (!line.includes(`resource="${resource}"`) || !line.includes('verb="POST"')) continue;
    n += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return n;
};

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'kata-metrics-'));
  await installControllerPrereqs();
  await installNodeAgentRbac();
  await grantElectionLease(ELECTION_ID);
  ns = await freshNamespace('metrics');
  [controllerPort, agentPort] = await Promise.all([freePort(), freePort()]);

  // Who may scrape: ClusterRole kata-metrics-reader as deploy/monitoring/ ships it, bound here
  // to a ServiceAccount of this file's (the shipped binding names a Prometheus' account).
  const readerRole = parseAllDocuments(
    readFileSync(path.join(REPO_ROOT, 'deploy/monitoring/metrics-reader.yaml'), 'utf8'),
  )
    .map((d) => d.toJS() as { kind: string })
    .find((o) => o.kind === 'ClusterRole');
  await kubectl(['apply', '--server-side', '-f', '-'], JSON.stringify(readerRole));
  await kubectl(['-n', ns, 'create', 'serviceaccount', 'scraper']);
  await kubectl(['-n', ns, 'create', 'serviceaccount', 'nobody']);
  await kubectl([
    ...['create', 'clusterrolebinding', READER_BINDING, '--clusterrole=kata-metrics-reader'],
    `--serviceaccount=${ns}:scraper`,
  ]);
  [scraperToken, nobodyToken] = await Promise.all([
    requestToken('scraper'),
    requestToken('nobody'),
  ]);
  writeFileSync(path.join(work, 'scraper.token'), scraperToken);

  const bundle = await bundleEntry('src/controllers/main.ts', 'kata-controller');
  const kubeconfig = await serviceAccountKubeConfigPath('kata-system', 'kata-controller');
  const out = openSync(path.join(work, 'controller.log'), 'a');
  // Secure by default: no --metrics-* flag but the port.
  controller = spawn(
    process.execPath,
    [
      bundle,
      ...['--kubeconfig', kubeconfig, '--metrics-port', String(controllerPort)],
      ...['--identity', `metrics-${process.pid}`, '--watch-namespace', ns],
      ...['--leader-election-id', ELECTION_ID],
    ],
    { stdio: ['ignore', out, out], env: { ...process.env, LOG_LEVEL: 'info' } },
  );

  const dirs = {
    stateDir: path.join(work, 'state'),
    runDir: path.join(work, 'run'),
    logDir: path.join(work, 'logs'),
    roots: [path.join(work, 'roots')],
  };
  for (const d of [dirs.stateDir, dirs.runDir, dirs.logDir, ...dirs.roots]) {
    mkdirSync(d, { recursive: true });
  }
  // The node agent serves a certificate from files, as a mounted Secret would give it.
  const pair = selfSignedCertificate({ commonName: NODE, hosts: ['127.0.0.1'] });
  agentCa = pair.certPem;
  writeFileSync(path.join(work, 'agent-tls.crt'), pair.certPem);
  writeFileSync(path.join(work, 'agent-tls.key'), pair.keyPem, { mode: 0o600 });
  agent = await startNodeAgent(NODE, dirs, path.join(work, 'node-agent.log'), [
    ...['--metrics-port', String(agentPort), '--metrics-secure', 'true'],
    ...['--metrics-cert-file', path.join(work, 'agent-tls.crt')],
    ...['--metrics-key-file', path.join(work, 'agent-tls.key')],
  ]);
  // Both serve and have synced their informers (the controller leads too: its own election);
  // /readyz answers without a token.
  for (const c of COMPONENTS) {
    await eventually(
      `${c.name} to be ready`,
      async () =>
        (await get(c, '/readyz').catch(() => undefined))?.status === 200 ? true : undefined,
      90_000,
    );
  }
}, 300_000);

afterAll(async () => {
  await prometheus?.stop();
  if (controller && controller.exitCode === null) {
    const exited = new Promise((r) => controller?.once('exit', r));
    controller.kill('SIGTERM');
    await exited;
  }
  await agent?.stop();
  // Its Lease would look like a live node to other runs' controllers for 40 s more.
  const coord = (await adminKubeConfig()).makeApiClient(CoordinationV1Api);
  await coord
    .deleteNamespacedLease({ namespace: 'kata-system', name: `kata-node-${NODE}` })
    .catch(() => undefined);
  await kubectl(['delete', 'rolebinding,role', '-n', 'kata-system', ELECTION_ID]).catch(() => '');
  await kubectl(['delete', 'clusterrolebinding', READER_BINDING, '--ignore-not-found']).catch(
    () => '',
  );
  await kubectl(['delete', 'clusterrole', 'kata-metrics-reader', '--ignore-not-found']).catch(
    () => '',
  );
  if (ns)
    await kubectl(['-n', ns, 'delete', 'serviceaccount', 'scraper', 'nobody']).catch(() => '');
  if (work) rmSync(work, { recursive: true, force: true });
}, 120_000);

describe.each(COMPONENTS)('$name /metrics over HTTPS, reviewed by the API server', (c) => {
  it('serves the metrics to a ServiceAccount token allowed get on /metrics', async () => {
    const r = await get(c, '/metrics', scraperToken);
    expect(r.status).toBe(200);
    expect(r.body).toContain(c.series);
  });

  it('answers 403 to a ServiceAccount without the permission, naming it', async () => {
    const r = await get(c, '/metrics', nobodyToken);
    expect(r.status).toBe(403);
    expect(r.body).toContain(
      `user "system:serviceaccount:${ns}:nobody" may not get non-resource URL /metrics`,
    );
    expect(r.body).not.toContain(c.series);
  });

  it('answers 401 to a token the API server does not accept, and to none', async () => {
    const garbage = await get(c, '/metrics', 'not-a-token');
    expect(garbage.status).toBe(401);
    expect(garbage.body).toMatch(/^Unauthorized: the token was not accepted by TokenReview/);
    const none = await get(c, '/metrics');
    expect(none.status).toBe(401);
    expect(none.body).toMatch(/needs a bearer token/);
    expect(`${garbage.body}${none.body}`).not.toContain(c.series);
  });

  it('keeps /healthz and /readyz open without a token', async () => {
    expect((await get(c, '/healthz')).status).toBe(200);
    expect((await get(c, '/readyz')).status).toBe(200);
  });

  it('speaks no plain HTTP', async () => {
    await expect(
      fetch(`http://127.0.0.1:${c.port()}/metrics`, { signal: AbortSignal.timeout(5_000) }).then(
        (r) => r.status,
      ),
    ).rejects.toThrow();
  });
});

describe('the cost of a reviewed scrape', () => {
  it('one TokenReview and one SubjectAccessReview for many scrapes with one token (the decision is cached)', async () => {
    const token = await requestToken('scraper');
    const c = COMPONENTS[0]!;
    const before = [
      await reviewRequests('tokenreviews'),
      await reviewRequests('subjectaccessreviews'),
    ];
    for (let i = 0; i < 5; i++) expect((await get(c, '/metrics', token)).status).toBe(200);
    const after = [
      await reviewRequests('tokenreviews'),
      await reviewRequests('subjectaccessreviews'),
    ];
    expect([after[0]! - before[0]!, after[1]! - before[1]!]).toEqual([1, 1]);
  });

  it('prints the time of a scrape: reviewed (cache miss), cached, plain HTTP, /healthz', async () => {
    const c = COMPONENTS[0]!;
    const runs = 20;
    const fresh = await Promise.all(Array.from({ length: runs }, () => requestToken('scraper')));
    // The same controller with --metrics-secure false (plain HTTP on loopback), for comparison.
    const plainPort = await freePort();
    const plain = spawnComponent(
      await bundleEntry('src/controllers/main.ts', 'kata-controller'),
      [
        ...['--kubeconfig', await serviceAccountKubeConfigPath('kata-system', 'kata-controller')],
        ...['--metrics-port', String(plainPort), '--metrics-secure', 'false'],
        ...[
          '--leader-elect',
          'false',
          '--watch-namespace',
          ns,
          '--identity',
          `plain-${process.pid}`,
        ],
      ],
      path.join(work, 'plain-controller.log'),
    );
    try {
      await eventually(
        'the plain-HTTP controller to be ready',
        async () =>
          (await httpGet(`http://127.0.0.1:${plainPort}/readyz`).catch(() => undefined))?.status ===
          200
            ? true
            : undefined,
        90_000,
      );
      const keepAlive = new Agent({ keepAlive: true, rejectUnauthorized: false });
      const plainAgent = new HttpAgent({ keepAlive: true });
      const time = async (fn: () => Promise<{ status: number }>): Promise<number[]> => {
        const ms: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t0 = process.hrtime.bigint();
          expect((await fn()).status).toBe(200);
          ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        return ms;
      };
      const plainGet = (p: string) =>
        new Promise<{ status: number }>((resolve, reject) => {
          httpRequest(`http://127.0.0.1:${plainPort}${p}`, { agent: plainAgent }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
          })
            .on('error', reject)
            .end();
        });
      // Warm both connections and the cache.
      await get(c, '/metrics', scraperToken, keepAlive);
      await plainGet('/metrics');
      let i = 0;
      const miss = await time(() => get(c, '/metrics', fresh[i++], keepAlive));
      const hit = await time(() => get(c, '/metrics', scraperToken, keepAlive));
      const newConn = await time(() => get(c, '/metrics', scraperToken));
      const http = await time(() => plainGet('/metrics'));
      const probe = await time(() => get(c, '/healthz', undefined, keepAlive));
      keepAlive.destroy();
      plainAgent.destroy();
      const q = (xs: number[], f: number): string => {
        const sorted = [...xs].sort((a, b) => a - b);
        return (sorted[Math.min(xs.length - 1, Math.floor(f * xs.length))] ?? NaN).toFixed(1);
      };
      const row = (name: string, xs: number[]) =>
        `  ${name.padEnd(58)} median ${q(xs, 0.5).padStart(6)}  p90 ${q(xs, 0.9).padStart(6)}`;
      console.log(
        [
          `controller GET /metrics, ${runs} runs each (ms):`,
          row('HTTPS, reviewed (new token: TokenReview + SAR)', miss),
          row('HTTPS, cached decision, kept-alive connection', hit),
          row('HTTPS, cached decision, new TLS connection each', newConn),
          row('plain HTTP (--metrics-secure false), kept-alive', http),
          row('HTTPS /healthz (no review, no exposition), kept-alive', probe),
        ].join('\n'),
      );
      expect(miss.length).toBe(runs);
    } finally {
      await plain.stop();
    }
  });
});

describe('promtool check metrics', () => {
  it("passes on the controller's /metrics", async () => {
    const text = await scrape(COMPONENTS[0]!);
    expect(text).toContain('kata_controller_leader');
    const r = await promtoolCheck(text);
    expect(ownProblems(r.output)).toEqual([]);
    expect(r.code).toBe(0);
  });

  it("passes on the node agent's /metrics", async () => {
    const text = await scrape(COMPONENTS[1]!);
    expect(text).toContain('kata_node_vm_boot_duration_seconds');
    const r = await promtoolCheck(text);
    expect(ownProblems(r.output)).toEqual([]);
    expect(r.code).toBe(0);
  });
  it('would catch a badly named metric (the check is not a no-op)', async () => {
    const r = await promtoolCheck(
      '# HELP kata_bad_seconds_count x\n# TYPE kata_bad_seconds_count counter\nkata_bad_seconds_count 1\n',
    );
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/counter metrics should have "_total" suffix/);
  });
});

describe('a real Prometheus scrapes both components over HTTPS with a bearer token', () => {
  beforeAll(async () => {
    // HTTPS with the scraper's token: the controller's self-signed certificate unverified
    // (insecure_skip_verify), the node agent's verified against its CA.
    const tokenFile = path.join(work, 'scraper.token');
    prometheus = await startPrometheus(path.join(work, 'prometheus'), [
      { job: 'kata-controller', port: controllerPort, https: { tokenFile } },
      {
        job: 'kata-node-agent',
        port: agentPort,
        labels: { node: NODE },
        https: { tokenFile, caFile: path.join(work, 'agent-tls.crt') },
      },
    ]);
  }, 60_000);

  it('reports up == 1 for the controller and the node agent', async () => {
    const up = await eventually(
      'both targets up',
      async () => {
        const r = await prometheus!.query('up');
        const byJob = Object.fromEntries(r.map((v) => [v.metric['job'], v.value[1]]));
        return byJob['kata-controller'] === '1' && byJob['kata-node-agent'] === '1'
          ? byJob
          : undefined;
      },
      90_000,
    );
    expect(up).toEqual({ 'kata-controller': '1', 'kata-node-agent': '1' });
  });

  it("scraped the components' own series: the leader gauge and the node agent's QEMU gauge", async () => {
    const leader = await eventually(
      'kata_controller_leader == 1',
      async () => {
        const r = await prometheus!.query('kata_controller_leader');
        return r.length === 1 && r[0]?.value[1] === '1' ? r : undefined;
      },
      90_000,
    );
    expect(leader[0]?.metric['job']).toBe('kata-controller');
    const qemu = await prometheus!.query(`kata_node_qemu_processes{node="${NODE}"}`);
    expect(qemu.map((v) => v.value[1])).toEqual(['0']);
  });
});

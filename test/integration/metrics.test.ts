// The metrics of both components, checked by Prometheus' own tools: the real kata-controller and
// kata-node-agent run as processes against the run's control plane (with their ServiceAccount
// identities and RBAC from deploy/rbac), `promtool check metrics` lints each /metrics, and a real
// Prometheus (Debian `prometheus`) started here on 127.0.0.1 scrapes both: `up == 1` for each.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { adminKubeConfig, freshNamespace, serviceAccountKubeConfigPath } from './cluster.js';
import {
  bundleEntry,
  eventually,
  grantElectionLease,
  installControllerPrereqs,
  kubectl,
} from './controller-harness.js';
import {
  installNodeAgentRbac,
  startNodeAgent,
  type RunningNodeAgent,
} from '../e2e/node-agent-harness.js';
import { CoordinationV1Api } from '@kubernetes/client-node';
import {
  freePort,
  httpGet,
  metricsOf,
  ownProblems,
  promtoolCheck,
  startPrometheus,
  type RunningPrometheus,
} from './metrics-harness.js';

jest.setTimeout(300_000);

const ELECTION_ID = `kata-controller-metrics-${process.pid}`;
const NODE = `metrics-${process.pid}`;

let work: string;
let controller: ChildProcess | undefined;
let agent: RunningNodeAgent | undefined;
let prometheus: RunningPrometheus | undefined;
let controllerPort = 0;
let agentPort = 0;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'kata-metrics-'));
  await installControllerPrereqs();
  await installNodeAgentRbac();
  await grantElectionLease(ELECTION_ID);
  const ns = await freshNamespace('metrics');
  [controllerPort, agentPort] = await Promise.all([freePort(), freePort()]);

  const bundle = await bundleEntry('src/controllers/main.ts', 'kata-controller');
  const kubeconfig = await serviceAccountKubeConfigPath('kata-system', 'kata-controller');
  const out = openSync(path.join(work, 'controller.log'), 'a');
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
  agent = await startNodeAgent(NODE, dirs, path.join(work, 'node-agent.log'), [
    '--metrics-port',
    String(agentPort),
  ]);
  // Both serve and have synced their informers (the controller leads too: its own election).
  await eventually(
    'the controller to be ready',
    async () =>
      (await httpGet(`http://127.0.0.1:${controllerPort}/readyz`)).status === 200
        ? true
        : undefined,
    90_000,
  );
  await eventually(
    'the node agent to be ready',
    async () =>
      (await httpGet(`http://127.0.0.1:${agentPort}/readyz`)).status === 200 ? true : undefined,
    90_000,
  );
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
  if (work) rmSync(work, { recursive: true, force: true });
}, 120_000);

describe('promtool check metrics', () => {
  it("passes on the controller's /metrics", async () => {
    const text = await metricsOf(controllerPort);
    expect(text).toContain('kata_controller_leader');
    const r = await promtoolCheck(text);
    expect(ownProblems(r.output)).toEqual([]);
    expect(r.code).toBe(0);
  });

  it("passes on the node agent's /metrics", async () => {
    const text = await metricsOf(agentPort);
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

describe('a real Prometheus scrapes both components', () => {
  beforeAll(async () => {
    prometheus = await startPrometheus(path.join(work, 'prometheus'), [
      { job: 'kata-controller', port: controllerPort },
      { job: 'kata-node-agent', port: agentPort, labels: { node: NODE } },
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

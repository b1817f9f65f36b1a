// One sandbox's whole life with everything from deploy/ in force, on a private control plane
// (deploy-harness.ts): the CRD, RBAC and both admission policies installed by `kubectl apply -k
// deploy/`; the real kata-controller and kata-node-agent as processes, each authenticated as a
// cluster gives it: a TokenRequest token bound to its Pod (the node agent's on node `a`, so the
// API server puts `a` in its user extra and the policy holds it to node `a`); real QEMU booting
// the guest image. The happy path meets no 403 anywhere, the boot lands in the node agent's boot
// histogram, and a real Prometheus scrapes it there.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CustomObjectsApi } from '@kubernetes/client-node';
import type { KataSandbox } from '../../src/crds/index.js';
import { makeBusyboxRootfs } from '../e2e/node-agent-harness.js';
import { qemuPidsOf, removeScratch } from '../e2e/sandbox-api.js';
import { REPO_ROOT } from './cluster.js';
import { builtHostFsBinary } from './host-fs-binary.js';
import { bundleEntry, eventually } from './controller-harness.js';
import {
  applyDeploy,
  podBoundToken,
  startPrivatePlane,
  whoAmI,
  type PrivatePlane,
} from './deploy-harness.js';
import {
  freePort,
  httpGet,
  metricsOf,
  ownProblems,
  promtoolCheck,
  sampleValue,
  startPrometheus,
  type RunningPrometheus,
} from './metrics-harness.js';

jest.setTimeout(600_000);

const NODE = 'a';
const NS = 'lifecycle';
const GROUP = { group: 'kata.sandbox.io', version: 'v1alpha1', plural: 'katasandboxes' };

let plane: PrivatePlane;
let base: string;
let api: CustomObjectsApi;
let controller: ChildProcess | undefined;
let agent: ChildProcess | undefined;
let prometheus: RunningPrometheus | undefined;
let agentPort = 0;
let controllerPort = 0;
const logs: string[] = [];

function startProcess(bundle: string, args: string[], log: string): ChildProcess {
  logs.push(log);
  const fd = openSync(log, 'a');
  return spawn(process.execPath, [bundle, ...args], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, LOG_LEVEL: 'debug' },
  });
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function get(name: string): Promise<KataSandbox | undefined> {
  try {
    return (await api.getNamespacedCustomObject({ ...GROUP, namespace: NS, name })) as KataSandbox;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

beforeAll(async () => {
  execFileSync('make', ['--no-print-directory', 'guest'], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
    timeout: 15 * 60_000,
  });
  plane = await startPrivatePlane('kata-lifecycle');
  await applyDeploy(plane);
  await plane.kubectl(['create', 'namespace', NS]);
  api = plane.admin().makeApiClient(CustomObjectsApi);

  const [ctlToken, agentToken] = await Promise.all([
    podBoundToken(plane, 'kata-controller', 'kata-controller-6d9f-x1', 'cp'),
    podBoundToken(plane, 'kata-node-agent', `kata-node-agent-${NODE}`, NODE),
  ]);
  const ctlConfig = plane.tokenConfigFile(ctlToken, 'controller');
  const agentConfig = plane.tokenConfigFile(agentToken, 'node-agent');
  expect(
    (await whoAmI(plane, agentConfig)).extra['authentication.kubernetes.io/node-name'],
  ).toEqual([NODE]);

  base = mkdtempSync('/tmp/kata-lifecycle-');
  const roots = path.join(base, 'roots');
  makeBusyboxRootfs(path.join(roots, 'busybox'));
  const dirs = ['state', 'run', 'logs'].map((d) => path.join(base, d));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  [controllerPort, agentPort] = await Promise.all([freePort(), freePort()]);

  controller = startProcess(
    await bundleEntry('src/controllers/main.ts', 'kata-controller'),
    // Plain HTTP on loopback: this file's Prometheus reads the dashboard's series; the secure
    // endpoints are test/integration/metrics.test.ts's.
    [
      '--kubeconfig',
      ctlConfig,
      '--metrics-port',
      String(controllerPort),
      '--metrics-secure',
      'false',
    ],
    path.join(base, 'controller.log'),
  );
  agent = startProcess(
    await bundleEntry('src/node-agent/main.ts', 'kata-node-agent'),
    [
      ...['--kubeconfig', agentConfig, '--node-name', NODE],
      ...['--metrics-port', String(agentPort), '--metrics-secure', 'false'],
      ...['--default-accelerator', 'auto'],
      ...['--state-dir', dirs[0] ?? '', '--run-dir', dirs[1] ?? '', '--log-dir', dirs[2] ?? ''],
      ...['--allowed-host-path-roots', roots, '--host-fs-binary', builtHostFsBinary()],
      // The guest panels need two samples within the dashboard check's wait.
      ...['--guest-stats-ms', '2000'],
    ],
    path.join(base, 'node-agent.log'),
  );
  prometheus = await startPrometheus(path.join(base, 'prometheus'), [
    { job: 'kata-controller', port: controllerPort },
    { job: 'kata-node-agent', port: agentPort, labels: { node: NODE } },
  ]);
}, 20 * 60_000);

afterAll(async () => {
  await prometheus?.stop();
  await stop(agent);
  await stop(controller);
  if (base) await removeScratch(base);
  await plane?.down();
}, 180_000);

describe('a sandbox from create to gone, with deploy/ in force and Pod-bound identities', () => {
  let uid = '';

  it('is scheduled by the controller, booted by the node agent on its node, and Running', async () => {
    await api.createNamespacedCustomObject({
      ...GROUP,
      namespace: NS,
      body: {
        apiVersion: 'kata.sandbox.io/v1alpha1',
        kind: 'KataSandbox',
        metadata: { name: 'first' },
        spec: {
          terminationGracePeriodSeconds: 3,
          vm: { memoryMiB: 512, accelerator: 'auto' },
          containers: [
            {
              name: 'main',
              rootfs: { hostPath: { path: path.join(base, 'roots/busybox') } },
              command: ['/bin/sh', '-c', 'echo hello-from-deploy; while true; do sleep 1; done'],
            },
          ],
        },
      },
    });
    const sb = await eventually(
      'sandbox first Running',
      async () => {
        const s = await get('first');
        if (s?.status?.phase === 'Failed') throw new Error(JSON.stringify(s.status));
        return s?.status?.phase === 'Running' ? s : undefined;
      },
      480_000,
    );
    uid = sb.metadata.uid ?? '';
    expect(sb.metadata.labels?.['kata.sandbox.io/node']).toBe(NODE);
    expect(sb.metadata.finalizers).toContain('kata.sandbox.io/node-cleanup');
    expect(sb.status?.nodeName).toBe(NODE);
    expect(sb.status?.vm?.bootMillis).toBeGreaterThan(0);
    expect(qemuPidsOf(uid)).toHaveLength(1);
  });

  it('shows its boot in the boot histogram, which promtool still accepts, and Prometheus scrapes it', async () => {
    const sb = await get('first');
    const accel = sb?.status?.vm?.accelerator ?? '';
    expect(['kvm', 'tcg']).toContain(accel);
    const text = await metricsOf(agentPort);
    expect(
      sampleValue(text, 'kata_node_vm_boot_duration_seconds_count', `accelerator="${accel}"`),
    ).toBe(1);
    const sum = sampleValue(
      text,
      'kata_node_vm_boot_duration_seconds_sum',
      `accelerator="${accel}"`,
    );
    expect(sum).toBeCloseTo((sb?.status?.vm?.bootMillis ?? 0) / 1000, 0);
    // The running VM's own cost, from /proc of its real QEMU, labelled by the sandbox.
    const own = `namespace="${NS}",name="first",node="${NODE}"`;
    expect(sampleValue(text, 'kata_node_sandbox_qemu_cpu_seconds_total', own)).toBeGreaterThan(0);
    expect(sampleValue(text, 'kata_node_sandbox_qemu_resident_memory_bytes', own)).toBeGreaterThan(
      64 * 1024 * 1024,
    );
    expect(sampleValue(text, 'kata_node_allocated', 'resource="sandboxes"')).toBe(1);
    // What the guest says of itself, sampled every 2 s here: its memory, the container's cgroup
    // (StatsContainer) and the guest's loopback.
    const guest = await eventually(
      'the guest sample of "first"',
      async () => {
        const t = await metricsOf(agentPort);
        const v = (name: string, extra = ''): number | undefined =>
          sampleValue(t, name, own + extra);
        const main = ',container="main"';
        const got = {
          memoryTotal: v('kata_node_sandbox_guest_memory_total_bytes'),
          memoryAvailable: v('kata_node_sandbox_guest_memory_available_bytes'),
          cpu: v('kata_node_sandbox_container_cpu_seconds_total', main),
          usage: v('kata_node_sandbox_container_memory_usage_bytes', main),
          workingSet: v('kata_node_sandbox_container_memory_working_set_bytes', main),
          loRx: v('kata_node_sandbox_network_receive_bytes_total', ',interface="lo"'),
          loTx: v('kata_node_sandbox_network_transmit_bytes_total', ',interface="lo"'),
        };
        return Object.values(got).every((x) => x !== undefined) ? got : undefined;
      },
      60_000,
    );
    expect(guest.memoryTotal).toBeGreaterThan(256 * 1024 * 1024);
    expect(guest.memoryAvailable).toBeLessThanOrEqual(guest.memoryTotal ?? 0);
    expect(guest.cpu).toBeGreaterThan(0);
    expect(guest.usage).toBeGreaterThan(0);
    expect(guest.workingSet).toBeLessThanOrEqual(guest.usage ?? 0);
    expect(guest.loRx).toBe(guest.loTx);
    // promtool on a scrape that has the guest series too.
    expect(ownProblems((await promtoolCheck(await metricsOf(agentPort))).output)).toEqual([]);
    const scraped = await eventually(
      'the boot in Prometheus',
      async () => {
        const r = await prometheus?.query(
          `kata_node_vm_boot_duration_seconds_count{job="kata-node-agent",node="${NODE}"}`,
        );
        return r?.length === 1 && r[0]?.value[1] === '1' ? r : undefined;
      },
      90_000,
    );
    expect(scraped[0]?.metric['accelerator']).toBe(accel);
    const up = await prometheus?.query('up');
    expect(Object.fromEntries((up ?? []).map((v) => [v.metric['job'], v.value[1]]))).toEqual({
      'kata-controller': '1',
      'kata-node-agent': '1',
    });
  });

  it('every panel of the Grafana dashboard returns data from the running stack', async () => {
    const dashboard = JSON.parse(
      readFileSync(path.join(REPO_ROOT, 'deploy/monitoring/grafana-dashboard.json'), 'utf8'),
    ) as { panels: { title: string; targets?: { expr: string }[] }[] };
    const queries = dashboard.panels.flatMap((p) =>
      (p.targets ?? []).map((t) => ({
        panel: p.title,
        // The dashboard's variables at "All".
        expr: t.expr.replace(/\$(node|namespace|sandbox)\b/g, '.*'),
      })),
    );
    expect(queries.length).toBeGreaterThan(10);
    for (const q of queries) {
      const result = await eventually(
        `data for "${q.panel}": ${q.expr}`,
        async () => {
          const r = await prometheus?.query(q.expr);
          return r && r.length > 0 ? r : undefined;
        },
        60_000,
      );
      expect({ panel: q.panel, series: result.length > 0 }).toEqual({
        panel: q.panel,
        series: true,
      });
    }
  });

  it('on delete, the node agent stops the VM and drops the finalizer; nothing is left', async () => {
    await api.deleteNamespacedCustomObject({ ...GROUP, namespace: NS, name: 'first' });
    await eventually(
      'sandbox first gone',
      async () => ((await get('first')) ? undefined : true),
      180_000,
    );
    expect(qemuPidsOf(uid)).toEqual([]);
    expect(existsSync(path.join(base, 'state/sandboxes', uid))).toBe(false);
    expect(existsSync(path.join(base, 'run/shared', uid))).toBe(false);
  });

  it('neither component was refused anything on the way (no 403 in their logs)', async () => {
    // Both are still up: the controller leads, the node agent serves.
    expect((await httpGet(`http://127.0.0.1:${controllerPort}/readyz`)).status).toBe(200);
    expect((await httpGet(`http://127.0.0.1:${agentPort}/readyz`)).status).toBe(200);
    for (const log of logs) {
      const text = readFileSync(log, 'utf8');
      expect(text.length).toBeGreaterThan(0);
      const refused = text
        .split('\n')
        .filter((l) => /HTTP 403|forbidden|ValidatingAdmissionPolicy/i.test(l));
      expect({ log: path.basename(log), refused }).toEqual({
        log: path.basename(log),
        refused: [],
      });
    }
  });
});

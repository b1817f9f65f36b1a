// `make demo`: the whole system on this machine. The local control plane (started if it is not
// up), the CRD and RBAC from deploy/, the controller and the node agent as processes with their
// own ServiceAccount identities (this machine is node "local", QEMU under TCG here), the sample
// from deploy/samples/, its Ready, its output, and where the metrics are. Then it waits for
// Ctrl-C (or, with DEMO_EXIT=1, stops at once) and removes everything it made.
//
// It reuses the harness the e2e tests run the components with (test/integration/, test/e2e/):
// the same identities, the same bundling, no second copy.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  controlplane,
  holdPlane,
  KUBECONFIG_ENV,
  releasePlane,
  REPO_ROOT,
} from '../test/integration/cluster.js';
import {
  grantElectionLease,
  installControllerPrereqs,
  kubectl,
  startController,
  type RunningController,
} from '../test/integration/controller-harness.js';
import {
  installNodeAgentRbac,
  makeBusyboxRootfs,
  startNodeAgent,
  type RunningNodeAgent,
} from '../test/e2e/node-agent-harness.js';

const NODE = 'local';
const ROOTS = '/var/lib/kata-rootfs';
const ROOTFS = path.join(ROOTS, 'busybox');
const SAMPLES = path.join(REPO_ROOT, 'deploy/samples');
const SAMPLE = { namespace: 'default', name: 'busybox', container: 'main' };
const ELECTION_ID = 'kata-controller-demo';
const READY_TIMEOUT = '600s';
const exitAfterReady = process.env['DEMO_EXIT'] === '1';

const run = promisify(execFile);
const base = mkdtempSync(path.join(tmpdir(), 'kata-demo-'));
const dirs = {
  stateDir: path.join(base, 'state'),
  runDir: path.join(base, 'run'),
  logDir: path.join(base, 'logs'),
  roots: [ROOTS],
};
const cleanups: { what: string; fn: () => Promise<unknown> }[] = [];
let stepNo = 0;

function say(msg: string): void {
  process.stdout.write(`${msg}\n`);
}

/** One numbered step; a failure names the step and where to look. */
async function step<T>(title: string, fn: () => Promise<T>, logHint?: () => string): Promise<T> {
  stepNo++;
  const t0 = Date.now();
  process.stdout.write(`[${stepNo}] ${title} ... `);
  try {
    const out = await fn();
    say(`ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return out;
  } catch (err) {
    say('FAILED');
    const e = err as Error & { stderr?: string };
    say(`    ${e.message.split('\n').slice(0, 12).join('\n    ')}`);
    if (e.stderr) say(`    ${e.stderr.trim().split('\n').slice(-8).join('\n    ')}`);
    if (logHint) say(`    log: ${logHint()}`);
    throw new DemoFailure(title);
  }
}

class DemoFailure extends Error {}

/** The port a component logged for /metrics (JSON log line "serving /metrics ..."). */
async function metricsPort(logFile: string, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
    for (const line of text.split('\n')) {
      if (!line.includes('serving /metrics')) continue;
      const port = (JSON.parse(line) as { port?: number }).port;
      if (port) return port;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no "serving /metrics" line in ${logFile} within ${timeoutMs} ms`);
}

async function cleanup(): Promise<void> {
  say('cleaning up');
  for (const c of cleanups.reverse()) {
    try {
      await c.fn();
      say(`    ${c.what}: done`);
    } catch (err) {
      say(`    ${c.what}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  rmSync(base, { recursive: true, force: true });
}

async function main(): Promise<void> {
  say(`kata-sandbox-operator demo (scratch: ${base})`);
  const planPath = await step('local control plane (kube-apiserver + etcd)', async () => {
    let p = await controlplane(['status']).catch(() => '');
    const started = !p.startsWith('/');
    if (started) p = await controlplane(['up']);
    holdPlane(p, started);
    process.env[KUBECONFIG_ENV] = p;
    cleanups.push({
      what: started ? 'control plane stopped' : 'control plane left running (not ours)',
      fn: async () => {
        if (releasePlane(p) && process.env['KATA_CP_KEEP'] !== '1') await controlplane(['down']);
      },
    });
    return p;
  });
  say(`    kubectl --kubeconfig ${planPath} get ksb -A`);

  await step('CRD and RBAC from deploy/ (crds, rbac)', async () => {
    await installControllerPrereqs();
    await installNodeAgentRbac();
    await grantElectionLease(ELECTION_ID);
    cleanups.push({
      what: 'demo election Lease and its Role removed',
      fn: () =>
        kubectl([
          '-n',
          'kata-system',
          'delete',
          'role,rolebinding,lease',
          ELECTION_ID,
          '--ignore-not-found',
        ]),
    });
  });

  await step(`busybox root filesystem at ${ROOTFS}`, async () => {
    if (existsSync(ROOTFS)) return;
    mkdirSync(ROOTS, { recursive: true });
    makeBusyboxRootfs(ROOTFS);
    cleanups.push({
      what: `${ROOTFS} removed`,
      fn: () => Promise.resolve(rmSync(ROOTFS, { recursive: true, force: true })),
    });
  });

  const controller: RunningController = await step(
    'controller (ServiceAccount kata-system/kata-controller)',
    async () => {
      const c = await startController(`demo-${process.pid}`, {
        namespace: SAMPLE.namespace,
        electionId: ELECTION_ID,
      });
      cleanups.push({ what: 'controller stopped', fn: () => c.stop() });
      return c;
    },
  );
  const controllerPort = await metricsPort(controller.logFile);

  const agentLog = path.join(base, 'node-agent.log');
  const agent: RunningNodeAgent = await step(
    `node agent for node "${NODE}" (ServiceAccount kata-system/kata-node-agent)`,
    async () => {
      const a = await startNodeAgent(NODE, dirs, agentLog);
      cleanups.push({ what: 'node agent stopped', fn: () => a.stop() });
      return a;
    },
  );
  const agentPort = await metricsPort(agent.logFile);

  await step(
    'deploy/samples/ applied',
    async () => {
      await kubectl(['apply', '--server-side', '-k', SAMPLES]);
      // Runs before the processes stop (cleanups run in reverse): the node agent removes the VM
      // and its finalizer.
      cleanups.push({
        what: 'sample deleted (VM gone, finalizer removed)',
        fn: () => kubectl(['delete', '-k', SAMPLES, '--ignore-not-found', '--timeout=180s']),
      });
    },
    () => agentLog,
  );

  await step(
    `sandbox ${SAMPLE.namespace}/${SAMPLE.name} Ready (boots a VM; under TCG this takes a while)`,
    () =>
      kubectl(
        [
          '-n',
          SAMPLE.namespace,
          'wait',
          `--for=condition=Ready`,
          `--timeout=${READY_TIMEOUT}`,
          `ksb/${SAMPLE.name}`,
        ],
        undefined,
        620_000,
      ),
    () => `${agentLog} and ${controller.logFile}`,
  );

  say('');
  say(await kubectl(['-n', SAMPLE.namespace, 'get', 'ksb', '-o', 'wide']));
  const logs = readdirSync(dirs.logDir).find((d) =>
    d.startsWith(`${SAMPLE.namespace}_${SAMPLE.name}_`),
  );
  const logFile = logs ? path.join(dirs.logDir, logs, `${SAMPLE.container}.log`) : '';
  await new Promise((r) => setTimeout(r, 1000));
  say(`container output (${logFile}):`);
  say(
    (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '(nothing yet)')
      .split('\n')
      .map((l) => `    ${l}`)
      .join('\n'),
  );
  say('metrics:');
  say(`    controller  http://127.0.0.1:${controllerPort}/metrics`);
  say(`    node agent  http://127.0.0.1:${agentPort}/metrics`);
  say(`logs: controller ${controller.logFile}, node agent ${agentLog}`);
  const events = await run('kubectl', [
    '--kubeconfig',
    planPath,
    '-n',
    SAMPLE.namespace,
    'get',
    'events',
    '--field-selector',
    `involvedObject.name=${SAMPLE.name}`,
  ]);
  say(`events:\n${events.stdout}`);

  if (exitAfterReady) return;
  say('running; Ctrl-C stops the demo and removes everything it made');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

let failed = false;
let cleaning: Promise<void> | undefined;
const finish = () => (cleaning ??= cleanup());
process.on('SIGINT', () => void finish().then(() => process.exit(130)));
process.on('SIGTERM', () => void finish().then(() => process.exit(143)));
try {
  await main();
} catch (err) {
  failed = true;
  if (!(err instanceof DemoFailure)) say(`demo failed: ${(err as Error).stack ?? String(err)}`);
}
await finish();
say(failed ? 'demo FAILED' : 'demo finished');
process.exit(failed ? 1 : 0);

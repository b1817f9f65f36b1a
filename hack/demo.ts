// `make demo`: the whole system on this machine. The local control plane (started if it is not
// up, reused and left running if it is), the CRD and RBAC from deploy/, the controller and the
// node agent as processes with their own ServiceAccount identities (TokenRequest tokens; this
// machine is node "local", QEMU under TCG where KVM does not work), the sample from
// deploy/samples/ and a sandbox running an OCI image (from a registry the demo starts on
// 127.0.0.1) in a namespace of the demo's own, their Ready, their output, and where the metrics
// are. Then it waits for Ctrl-C (or, with DEMO_EXIT=1, stops at once) and removes everything it
// made: the sample (the node agent stops the VM and drops the finalizer), the processes, the
// Leases, the namespace, the scratch directory, and the control plane if it started it.
import { randomBytes } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { KataSandbox } from '../src/crds/index.js';
import { holdPlane, KUBECONFIG_ENV, releasePlane } from '../test/integration/cluster.js';
import { builtHostFsBinary } from '../test/integration/host-fs-binary.js';
import { grantElectionLease, revokeElectionLease } from '../test/integration/controller-harness.js';
import { makeBusyboxRootfs } from '../test/e2e/node-agent-harness.js';
import {
  buildBusyboxImage,
  pushImage,
  startRegistry,
} from '../test/integration/images-registry.js';
import { removeScratch } from '../test/e2e/sandbox-api.js';
import {
  bundleComponent,
  exec,
  serviceAccountIdentity,
  startComponent,
  SYSTEM_NAMESPACE,
  type Identity,
} from './local-components.js';

const REPO = process.env['KATA_REPO_ROOT'] ?? process.cwd();
const NODE = 'local';
const ROOTS = '/var/lib/kata-rootfs';
const ROOTFS = path.join(ROOTS, 'busybox');
const SAMPLES = path.join(REPO, 'deploy/samples');
const BUNDLES = path.join(REPO, 'node_modules/.cache/demo');
const READY_TIMEOUT_MS = Number(process.env['DEMO_READY_TIMEOUT'] ?? 600) * 1000;
const exitAfterReady = process.env['DEMO_EXIT'] === '1';

const tag = randomBytes(3).toString('hex');
const NAMESPACE = `kata-demo-${tag}`;
const ELECTION_ID = `kata-controller-demo-${tag}`;
const base = mkdtempSync(path.join(tmpdir(), 'kata-demo-'));
const dirs = {
  state: path.join(base, 'state'),
  run: path.join(base, 'run'),
  logs: path.join(base, 'container-logs'),
  identity: path.join(base, 'identity'),
  overlay: path.join(base, 'samples'),
};
// The components' logs, outside the scratch dir: kept (with the VMs' consoles) when a step fails.
const logDir = mkdtempSync(path.join(tmpdir(), 'kata-demo-logs-'));
let kubeconfig = '';

// --- output -------------------------------------------------------------------------------------

let lineOpen = false;
function say(msg: string): void {
  process.stdout.write(`${lineOpen ? '\n' : ''}${msg}\n`);
  lineOpen = false;
}

class Interrupted extends Error {}
class StepFailed extends Error {}
let stopping = false;
let stepNo = 0;

/** One numbered step: `ok` with its time, or FAILED with the error and the log to read. */
async function step<T>(title: string, fn: () => Promise<T>, logHint?: () => string): Promise<T> {
  if (stopping) throw new Interrupted();
  stepNo++;
  const t0 = Date.now();
  process.stdout.write(`[${stepNo}] ${title} ... `);
  lineOpen = true;
  try {
    const out = await fn();
    if (!lineOpen) process.stdout.write('    ');
    process.stdout.write(`ok (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    lineOpen = false;
    return out;
  } catch (err) {
    if (stopping) throw new Interrupted();
    say(`[${stepNo}] ${title}: FAILED`);
    const e = err as Error & { stderr?: string };
    say(`    ${e.message.trim().split('\n').slice(0, 15).join('\n    ')}`);
    if (e.stderr?.trim()) say(`    ${e.stderr.trim().split('\n').slice(-8).join('\n    ')}`);
    if (logHint) say(`    log: ${logHint()}`);
    throw new StepFailed(title);
  }
}

// --- cleanup ------------------------------------------------------------------------------------

const cleanups: { what: string; fn: () => Promise<unknown> }[] = [];
const late: Promise<void>[] = [];
let cleaning = false;

async function runCleanup(c: { what: string; fn: () => Promise<unknown> }): Promise<boolean> {
  try {
    await c.fn();
    say(`    ${c.what}`);
    return true;
  } catch (err) {
    say(
      `    ${c.what}: FAILED: ${(err as Error).message.trim().split('\n').slice(0, 4).join(' | ')}`,
    );
    return false;
  }
}

/** Registers an undo; once cleanup has begun (Ctrl-C during a step) it runs at once. */
function onCleanup(what: string, fn: () => Promise<unknown>): void {
  const c = { what, fn };
  if (cleaning) late.push(runCleanup(c).then(() => undefined));
  else cleanups.push(c);
}

/** Copies what the VMs and containers wrote into the kept log dir (after a failure). */
function keepLogs(): void {
  const copy = (from: string, to: string) => {
    if (existsSync(from)) cpSync(from, path.join(logDir, to), { recursive: true });
  };
  const vms = path.join(dirs.run, 'sandboxes');
  for (const uid of existsSync(vms) ? readdirSync(vms) : []) {
    copy(path.join(vms, uid, 'console.log'), `console-${uid}.log`);
    copy(path.join(vms, uid, 'qemu.log'), `qemu-${uid}.log`);
  }
  copy(dirs.logs, 'container-logs');
}

async function cleanup(keep: () => boolean): Promise<boolean> {
  cleaning = true;
  say('cleaning up');
  let ok = true;
  for (const c of cleanups.reverse()) ok = (await runCleanup(c)) && ok;
  await Promise.all(late);
  if (keep() || !ok) {
    try {
      keepLogs();
    } catch (err) {
      say(`    copying the VM logs failed: ${String(err)}`);
    }
    say(`    logs kept in ${logDir}`);
  } else rmSync(logDir, { recursive: true, force: true });
  // Anything still naming the scratch dir (a QEMU whose sandbox could not be deleted) is killed,
  // what is mounted under it unmounted, then it goes.
  await removeScratch(base);
  if (existsSync(base)) {
    ok = false;
    say(`    ${base}: left behind (something is still mounted under it)`);
  } else say(`    ${base} removed`);
  return ok;
}

// --- helpers ------------------------------------------------------------------------------------

function kubectl(args: string[], timeoutMs = 60_000): Promise<string> {
  return exec('kubectl', ['--kubeconfig', kubeconfig, ...args], timeoutMs);
}

/** hack/controlplane.sh with an argv array; its last stdout line (the kubeconfig path). */
async function controlplane(args: string[], timeoutMs = 10 * 60_000): Promise<string> {
  const stdout = await exec(path.join(REPO, 'hack/controlplane.sh'), args, timeoutMs);
  return stdout.trim().split('\n').at(-1) ?? '';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The Lease of node `local`, if a node agent renewed it less than its duration ago. */
async function liveNodeLease(): Promise<string | undefined> {
  const out = await kubectl([
    ...['-n', SYSTEM_NAMESPACE, 'get', 'lease', `kata-node-${NODE}`],
    ...['-o', 'json', '--ignore-not-found'],
  ]);
  if (!out.trim()) return undefined;
  const spec = (JSON.parse(out) as { spec?: Record<string, unknown> }).spec ?? {};
  const renewed = Date.parse(String(spec['renewTime'] ?? ''));
  const ttl = Number(spec['leaseDurationSeconds'] ?? 40) * 1000;
  if (!(Date.now() < renewed + ttl)) return undefined;
  return `${String(spec['holderIdentity'] ?? '?')}, renewed ${((Date.now() - renewed) / 1000).toFixed(0)} s ago`;
}

/** Waits until every sandbox is Ready, printing each phase and condition as it turns up. */
async function waitReady(names: string[]): Promise<Map<string, KataSandbox>> {
  const seen = new Set<string>();
  const t0 = Date.now();
  const ready = new Map<string, KataSandbox>();
  while (ready.size < names.length) {
    if (stopping) throw new Interrupted();
    if (Date.now() - t0 > READY_TIMEOUT_MS) {
      throw new Error(`not Ready within ${READY_TIMEOUT_MS / 1000} s (DEMO_READY_TIMEOUT)`);
    }
    for (const name of names) {
      if (ready.has(name)) continue;
      const sb = JSON.parse(
        await kubectl(['-n', NAMESPACE, 'get', 'ksb', name, '-o', 'json']),
      ) as KataSandbox;
      const st = sb.status ?? {};
      const at = `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s`;
      const note = (key: string, text: string) => {
        if (seen.has(`${name}/${key}`)) return;
        seen.add(`${name}/${key}`);
        say(`    ${at}  ${names.length > 1 ? `${name}: ` : ''}${text}`);
      };
      if (st.phase)
        note(
          `phase ${st.phase}`,
          `phase ${st.phase}${st.nodeName ? ` (node ${st.nodeName})` : ''}`,
        );
      // Conditions as they turn True (a failure ends the wait with its reason and message).
      for (const c of st.conditions ?? []) {
        if (c.status !== 'True' || c.type === 'Terminated') continue;
        const vm = st.vm;
        const extra =
          c.type === 'VMReady' && vm
            ? ` (QEMU pid ${vm.pid}, ${vm.accelerator}, boot ${((vm.bootMillis ?? 0) / 1000).toFixed(1)} s)`
            : '';
        note(c.type, `${c.type}${extra}`);
      }
      if (st.phase === 'Failed' || st.phase === 'Succeeded') {
        throw new Error(`${name} ended ${st.phase}: ${st.reason ?? ''} ${st.message ?? ''}`.trim());
      }
      if (st.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
        ready.set(name, sb);
      }
    }
    if (ready.size < names.length) await sleep(1000);
  }
  return ready;
}

/** A container's log file (the node agent's --log-dir layout), once it has something in it. */
async function containerOutput(sb: KataSandbox, container: string): Promise<[string, string]> {
  const file = path.join(
    dirs.logs,
    `${sb.metadata?.namespace}_${sb.metadata?.name}_${sb.metadata?.uid}`,
    `${container}.log`,
  );
  let text = '';
  for (let i = 0; i < 20 && !text.trim(); i++) {
    text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (!text.trim()) await sleep(500);
  }
  return [file, text.trim() || '(nothing yet)'];
}

// --- the demo -----------------------------------------------------------------------------------

async function main(): Promise<void> {
  say(`kata-sandbox-operator demo (namespace ${NAMESPACE}, scratch ${base})`);

  kubeconfig = await step(
    'local control plane (kube-apiserver + etcd)',
    async () => {
      let p = await controlplane(['status']).catch(() => '');
      const started = !p.startsWith('/');
      if (started) p = await controlplane(['up']);
      holdPlane(p, started);
      onCleanup(
        started ? 'control plane stopped' : 'control plane left running (it was up before)',
        async () => {
          if (releasePlane(p) && process.env['KATA_CP_KEEP'] !== '1') await controlplane(['down']);
        },
      );
      return p;
    },
    () => `${CONTROLPLANE_DIR}/logs/ (kube-apiserver.log, etcd.log)`,
  );
  process.env[KUBECONFIG_ENV] = kubeconfig;
  say(`    kubectl --kubeconfig ${kubeconfig} -n ${NAMESPACE} get ksb`);

  await step('CRD and RBAC from deploy/ (namespace, crds/, rbac/)', async () => {
    for (const f of ['namespace.yaml', 'crds/']) {
      await kubectl(['apply', '--server-side', '-f', path.join(REPO, 'deploy', f)]);
    }
    await kubectl(
      [
        ...['wait', '--for=condition=Established', '--timeout=60s'],
        'crd/katasandboxes.kata.sandbox.io',
        'crd/katawarmpools.kata.sandbox.io',
      ],
      70_000,
    );
    for (const f of ['controller.yaml', 'node-agent.yaml', 'user-roles.yaml']) {
      await kubectl(['apply', '--server-side', '-f', path.join(REPO, 'deploy/rbac', f)]);
    }
    // The demo's controller elects itself on a Lease of its own, so it never contends with a
    // controller of a test run sharing this plane; its ServiceAccount may hold just that Lease.
    await grantElectionLease(ELECTION_ID);
    onCleanup(`election Lease ${ELECTION_ID} and its Role removed`, () =>
      revokeElectionLease(ELECTION_ID),
    );
  });

  await step(`namespace ${NAMESPACE}`, async () => {
    await kubectl(['create', 'namespace', NAMESPACE]);
    onCleanup(`namespace ${NAMESPACE} deleted`, () =>
      kubectl(['delete', 'namespace', NAMESPACE, '--wait=false', '--ignore-not-found']),
    );
  });

  await step(`busybox root filesystem at ${ROOTFS}`, async () => {
    if (existsSync(path.join(ROOTFS, 'bin/sh'))) return;
    mkdirSync(ROOTS, { recursive: true });
    onCleanup(`${ROOTFS} removed`, async () => rmSync(ROOTFS, { recursive: true, force: true }));
    makeBusyboxRootfs(ROOTFS);
  });

  const registry = await step(
    'an OCI registry on 127.0.0.1 (docker-registry) with image demo/hello:1 (umoci, skopeo)',
    async () => {
      const r = await startRegistry();
      onCleanup(`registry ${r.host} stopped`, () => r.stop());
      const work = path.join(base, 'image');
      mkdirSync(work, { recursive: true });
      const layout = await buildBusyboxImage(work, {
        entrypoint: ['/bin/sh', '-c'],
        cmd: [
          'trap \'exit 0\' TERM; echo "hello from $GREETER, running as $(id -u) in $(pwd)"; while true; do sleep 1; done',
        ],
        env: ['GREETER=an OCI image pulled by the node agent', 'PATH=/bin'],
        workingDir: '/tmp',
      });
      await pushImage(layout, r, 'demo/hello:1');
      return r;
    },
  );

  const [controllerBundle, agentBundle] = await step(
    `controller and node agent bundled (${path.relative(REPO, BUNDLES)}/)`,
    () =>
      Promise.all([
        bundleComponent(REPO, 'src/controllers/main.ts', 'kata-controller', BUNDLES),
        bundleComponent(REPO, 'src/node-agent/main.ts', 'kata-node-agent', BUNDLES),
      ]),
  );

  const identities = await step(
    'ServiceAccount tokens (TokenRequest) for kata-controller and kata-node-agent',
    async () => {
      const out = [];
      for (const sa of ['kata-controller', 'kata-node-agent']) {
        const id = await serviceAccountIdentity(kubeconfig, sa, dirs.identity);
        onCleanup(`${sa} token no longer renewed`, async () => id.close());
        out.push(id);
      }
      return out;
    },
  );

  const [controllerId, agentId] = identities as [Identity, Identity];

  const controllerLog = path.join(logDir, 'controller.log');
  const controller = await step(
    `controller (ServiceAccount ${SYSTEM_NAMESPACE}/kata-controller, namespace ${NAMESPACE})`,
    async () => {
      const c = startComponent(
        'kata-controller',
        controllerBundle,
        [
          // Plain HTTP on loopback: the demo prints /metrics URLs to open without a token.
          ...['--kubeconfig', controllerId.kubeconfig, '--metrics-port', '0'],
          ...['--metrics-secure', 'false'],
          ...['--identity', `demo-${tag}`, '--watch-namespace', NAMESPACE],
          ...['--leader-election-id', ELECTION_ID],
        ],
        controllerLog,
      );
      onCleanup('controller stopped', () => c.stop());
      const port = await c.metricsPort();
      await c.waitReady(port);
      return { c, port };
    },
    () => controllerLog,
  );

  const agentLog = path.join(logDir, 'node-agent.log');
  const agent = await step(
    `node agent for node "${NODE}" (ServiceAccount ${SYSTEM_NAMESPACE}/kata-node-agent)`,
    async () => {
      const other = await liveNodeLease();
      if (other) {
        throw new Error(
          `another node agent runs as node "${NODE}" (Lease ${SYSTEM_NAMESPACE}/kata-node-${NODE}: ${other}); stop it, or wait 40 s if it just stopped`,
        );
      }
      const a = startComponent(
        'kata-node-agent',
        agentBundle,
        [
          ...['--kubeconfig', agentId.kubeconfig, '--node-name', NODE, '--metrics-port', '0'],
          ...['--metrics-secure', 'false'],
          ...['--state-dir', dirs.state, '--run-dir', dirs.run, '--log-dir', dirs.logs],
          ...['--allowed-host-path-roots', ROOTS, '--default-accelerator', 'auto'],
          ...['--host-fs-binary', builtHostFsBinary()],
          ...['--insecure-registries', registry.host],
        ],
        agentLog,
      );
      // After the processes stop (cleanups run in reverse): the node is gone at once for the
      // scheduler, rather than when its Lease expires.
      onCleanup(`Lease ${SYSTEM_NAMESPACE}/kata-node-${NODE} removed`, () =>
        kubectl([
          ...['-n', SYSTEM_NAMESPACE, 'delete', 'lease', `kata-node-${NODE}`],
          '--ignore-not-found',
        ]),
      );
      onCleanup('node agent stopped', () => a.stop());
      const port = await a.metricsPort();
      await a.waitReady(port);
      return { a, port };
    },
    () => agentLog,
  );

  // deploy/samples/ as it is plus a sandbox running the registry's image, placed in the demo's
  // namespace and pinned to this node by an overlay (kustomize wants a relative path to its base).
  mkdirSync(dirs.overlay, { recursive: true });
  writeFileSync(
    path.join(dirs.overlay, 'hello-image.yaml'),
    [
      'apiVersion: kata.sandbox.io/v1alpha1',
      'kind: KataSandbox',
      'metadata: {name: hello-image}',
      'spec:',
      '  terminationGracePeriodSeconds: 5',
      '  vm: {memoryMiB: 512}',
      `  containers: [{name: main, image: "${registry.host}/demo/hello:1"}]`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(dirs.overlay, 'kustomization.yaml'),
    [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      `namespace: ${NAMESPACE}`,
      'resources:',
      `  - ${path.relative(dirs.overlay, SAMPLES)}`,
      '  - hello-image.yaml',
      'patches:',
      '  - target: {kind: KataSandbox}',
      '    patch: |-',
      '      - {op: add, path: /spec/nodeName, value: ' + NODE + '}',
      '',
    ].join('\n'),
  );
  const names = await step(
    `deploy/samples/ and hello-image applied (namespace ${NAMESPACE}, node ${NODE})`,
    async () => {
      const rendered = parseAllDocuments(await kubectl(['kustomize', dirs.overlay]))
        .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string } })
        .filter((o) => o.kind === 'KataSandbox')
        .map((o) => o.metadata?.name ?? '');
      if (rendered.length === 0) throw new Error('deploy/samples/ has no KataSandbox');
      // Runs while the node agent still runs (cleanups run in reverse): it stops the VM, cleans
      // the host and removes the finalizer; only then is the object gone.
      onCleanup('samples deleted (the node agent stopped the VMs and removed the finalizers)', () =>
        kubectl(['delete', '-k', dirs.overlay, '--ignore-not-found', '--timeout=180s'], 200_000),
      );
      await kubectl(['apply', '--server-side', '-k', dirs.overlay]);
      return rendered;
    },
  );

  const ready = await step(
    `${names.join(', ')} Ready (boots a VM; under TCG that takes a while)`,
    () => waitReady(names),
    () => `${agentLog} (node agent), ${controllerLog} (controller)`,
  );

  say('');
  say(await kubectl(['-n', NAMESPACE, 'get', 'ksb', '-o', 'wide']));
  for (const [name, sb] of ready) {
    for (const c of sb.spec?.containers ?? []) {
      const [file, text] = await containerOutput(sb, c.name);
      say(`output of ${name}/${c.name} (${file}):`);
      say(
        text
          .split('\n')
          .map((l) => `    ${l}`)
          .join('\n'),
      );
    }
    say(`events of ${name}:`);
    const events = await kubectl([
      ...['-n', NAMESPACE, 'get', 'events', '--sort-by=.metadata.creationTimestamp'],
      ...['--field-selector', `involvedObject.name=${name}`],
    ]).catch(() => '(could not list events)\n');
    say(
      events
        .trimEnd()
        .split('\n')
        .map((l) => `    ${l}`)
        .join('\n'),
    );
  }
  say('metrics:');
  say(`    controller  http://127.0.0.1:${controller.port}/metrics`);
  say(
    `    node agent  http://127.0.0.1:${agent.port}/metrics   (e.g. kata_node_vm_boot_duration_seconds)`,
  );
  say('logs:');
  say(`    controller  ${controllerLog}`);
  say(`    node agent  ${agentLog}`);
  for (const [name, sb] of ready) {
    say(
      `    VM console  ${path.join(dirs.run, 'sandboxes', sb.metadata?.uid ?? '?', 'console.log')} (${name})`,
    );
  }
  say(`try: kubectl --kubeconfig ${kubeconfig} -n ${NAMESPACE} describe ksb ${names[0]}`);

  if (exitAfterReady) return;
  say('');
  say('running; Ctrl-C stops the demo and removes everything it made');
  await new Promise<void>(() => {}); // ended by a signal
}

const CONTROLPLANE_DIR =
  process.env['KATA_CP_DIR'] ??
  path.join(
    process.env['XDG_CACHE_HOME'] ?? path.join(homedir(), '.cache'),
    'kata-sandbox-operator/controlplane',
  );

let interruptedBy: NodeJS.Signals | undefined;
const interrupted = new Promise<void>((resolve) => {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (interruptedBy) {
        say(`(${sig}: still cleaning up, please wait)`);
        return;
      }
      interruptedBy = sig;
      stopping = true;
      say(`${sig}: stopping`);
      resolve();
    });
  }
});

let failed = false;
await Promise.race([
  main().catch((err: unknown) => {
    if (err instanceof Interrupted) return;
    failed = true;
    if (!(err instanceof StepFailed)) say(`demo failed: ${(err as Error).stack ?? String(err)}`);
  }),
  interrupted,
]);
stopping = true;
const clean = await cleanup(() => failed);
if (failed) say('demo FAILED (see the step above)');
else if (!clean) say('demo done, but cleanup left something behind (see above)');
else
  say(
    interruptedBy && exitAfterReady
      ? 'demo interrupted; everything removed'
      : 'demo done; everything removed',
  );
process.exit(failed || !clean ? 1 : interruptedBy && exitAfterReady ? 130 : 0);

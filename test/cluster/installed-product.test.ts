// The product as users install it (issue 16): a real single-node cluster (hack/cluster.sh:
// containerd, runc, kubelet, scheduler, controller-manager, kube-proxy), the image built by
// `make image` and pushed to the cluster's registry, deploy/ applied through the overlay that
// only points at that image, and the controller and node agent running as Pods with their own
// ServiceAccount tokens. One story in order: each step builds on the one before.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { busyboxRootfs } from '../e2e/sandbox-vm.js';
import { parseAllDocuments } from 'yaml';
import {
  httpsGet,
  startPrometheus,
  type RunningPrometheus,
} from '../integration/metrics-harness.js';
import { runProgram } from '../integration/kata-api-harness.js';
import {
  Cluster,
  CLUSTER_IMAGE,
  CLUSTER_SCRIPT,
  IMAGE_SCRIPT,
  isReady,
  LOCAL_IMAGE,
  OVERLAY,
  REGISTRY,
  REPO,
  run,
  SYSTEM_NS,
  waitFor,
  type Pod,
} from './cluster-harness.js';
import { cgroupOf, hostSnapshot, startTimeOf, type HostSnapshot } from './host-snapshot.js';
import { vmMemoryLimit } from '../../src/node-agent/hypervisor/vm-memory-limit.js';
import { TCG_TRANSLATION_CACHE_MIB } from '../../src/node-agent/hypervisor/qemu-args.js';

const MIN = 60_000;
const NS = 'cluster-test';
const ROOTFS = '/var/lib/kata-rootfs/cluster-test-busybox';
const NODE = 'kata-node';
const KUBECTL_KATA = path.join(REPO, 'bin/kubectl-kata');

interface Sandbox {
  metadata: { name: string; uid: string; labels?: Record<string, string> };
  status?: {
    phase?: string;
    reason?: string;
    message?: string;
    nodeName?: string;
    vm?: { pid?: number; accelerator?: 'kvm' | 'tcg' };
    conditions?: { type: string; status: string }[];
  };
}

let before: HostSnapshot;
let cluster: Cluster;
let prometheus: RunningPrometheus | undefined;
let firstQemu: { pid: number; start: string; uid: string };

const sandboxSpec = (name: string) => ({
  apiVersion: 'kata.sandbox.io/v1alpha1',
  kind: 'KataSandbox',
  metadata: { name, namespace: NS },
  spec: {
    restartPolicy: 'Never',
    vm: { vcpus: 1, memoryMiB: 512 },
    network: { mode: 'none' },
    containers: [
      {
        name: 'main',
        rootfs: { hostPath: { path: ROOTFS } },
        command: ['/bin/sh', '-c'],
        args: ["trap 'exit 0' TERM; echo ready; while true; do sleep 1; done"],
      },
    ],
  },
});

const getSandbox = (name: string) => cluster.json<Sandbox>(['-n', NS, 'get', 'ksb', name]);

async function readySandbox(name: string, timeoutMs = 4 * MIN): Promise<Sandbox> {
  return waitFor(
    `sandbox ${name} Ready`,
    async () => {
      const sb = await getSandbox(name);
      if (sb.status?.phase === 'Failed') {
        throw new Error(`${name} failed: ${sb.status.reason}: ${sb.status.message}`);
      }
      const ready = sb.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      return ready && sb.status?.vm?.pid ? sb : undefined;
    },
    timeoutMs,
  );
}

/** The single node agent Pod once Ready, other than `not` (a Pod being replaced). */
const readyAgent = (not?: string) =>
  waitFor(
    'a Ready node agent Pod',
    async () => {
      const pods = (await cluster.pods('kata-node-agent')).filter(
        (p) => p.metadata.name !== not && !p.metadata.deletionTimestamp,
      );
      return pods.length === 1 && isReady(pods[0] as Pod) ? (pods[0] as Pod) : undefined;
    },
    3 * MIN,
  );

const leaseHolder = async (name: string) =>
  (
    await cluster.json<{ spec?: { holderIdentity?: string } }>([
      '-n',
      SYSTEM_NS,
      'get',
      'lease',
      name,
    ])
  ).spec?.holderIdentity;

beforeAll(async () => {
  // The image first: buildah's storage is not part of what the cluster may change.
  await run(IMAGE_SCRIPT, ['build', LOCAL_IMAGE], { timeoutMs: 40 * MIN });
  before = await hostSnapshot();
}, 45 * MIN);

afterAll(async () => {
  await prometheus?.stop();
  rmSync(ROOTFS, { recursive: true, force: true });
  // Whatever happened above, the host is left as it was.
  await run(CLUSTER_SCRIPT, ['down'], { timeoutMs: 5 * MIN }).catch((e: unknown) =>
    console.error(e),
  );
}, 6 * MIN);

describe('a cluster that cannot come up says why and leaves the host as it was', () => {
  it(
    'the registry cannot listen (its port is taken): up fails naming it and the kept logs',
    async () => {
      const squatter = createServer((s) => s.destroy());
      await new Promise<void>((r) => squatter.listen(5055, '127.0.0.1', r));
      try {
        const failure = await run(CLUSTER_SCRIPT, ['up'], { timeoutMs: 10 * MIN }).then(
          () => 'up succeeded',
          (e: Error) => e.message,
        );
        expect(failure).toMatch(/cluster: registry exited; last lines of \S+registry\.log/);
        expect(failure).toMatch(/address already in use/);
        expect(failure).toMatch(/cluster: up failed; logs in \S+cluster\.failed-logs/);
      } finally {
        await new Promise((r) => squatter.close(r));
      }
      expect(await hostSnapshot()).toEqual(before);
    },
    12 * MIN,
  );

  it(
    'a kubelet that refuses to start: up fails with its own words, everything made so far undone',
    async () => {
      const failure = await run(CLUSTER_SCRIPT, ['up'], {
        timeoutMs: 10 * MIN,
        env: { ...process.env, KATA_CLUSTER_KUBELET_ARGS: '--no-such-kubelet-flag' },
      }).then(
        () => 'up succeeded',
        (e: Error) => e.message,
      );
      expect(failure).toMatch(/cluster: kubelet exited; last lines of \S+kubelet\.log/);
      expect(failure).toMatch(/unknown flag: --no-such-kubelet-flag/);
      expect(failure).toMatch(/cluster: up failed; logs in /);
      expect(await hostSnapshot()).toEqual(before);
    },
    12 * MIN,
  );
});

describe('the installed product on a real single-node cluster', () => {
  it(
    'hack/cluster.sh up: a Ready node whose Pods reach the API through the kubernetes Service',
    async () => {
      const out = await run(CLUSTER_SCRIPT, ['up'], { timeoutMs: 20 * MIN });
      cluster = new Cluster(out.trim().split('\n').pop() ?? '');
      const node = await cluster.json<{
        status: { conditions: { type: string; status: string }[] };
      }>(['get', 'node', NODE]);
      expect(node.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
      const slices = await cluster.json<{ items: { endpoints: { addresses: string[] }[] }[] }>([
        ...[
          '-n',
          'default',
          'get',
          'endpointslices',
          '-l',
          'kubernetes.io/service-name=kubernetes',
        ],
      ]);
      expect(slices.items.flatMap((s) => s.endpoints.flatMap((e) => e.addresses))).toEqual([
        '10.244.77.1',
      ]);
      // The host is changed only while up: its propagation and sysctls are recorded for down.
      expect(await run(CLUSTER_SCRIPT, ['status'])).toContain('admin.kubeconfig');
    },
    25 * MIN,
  );

  it(
    'make image pushes the image to the cluster registry',
    async () => {
      await run(IMAGE_SCRIPT, ['build', LOCAL_IMAGE, CLUSTER_IMAGE], { timeoutMs: 20 * MIN });
      const tags = JSON.parse(
        await run('curl', ['-sf', `http://${REGISTRY}/v2/kata-sandbox-operator/tags/list`]),
      ) as {
        tags: string[];
      };
      expect(tags.tags).toContain('dev');
    },
    25 * MIN,
  );

  it(
    'the install applies cleanly; controller and node agent run as Pods with their ServiceAccounts',
    async () => {
      await cluster.kubectl(['apply', '--server-side', '-k', OVERLAY], { timeoutMs: 2 * MIN });
      await cluster.kubectl([
        ...[
          'wait',
          '--for=condition=Established',
          '--timeout=60s',
          'crd/katasandboxes.kata.sandbox.io',
        ],
      ]);
      await cluster.kubectl(
        ['-n', SYSTEM_NS, 'rollout', 'status', 'deployment/kata-controller', '--timeout=240s'],
        {
          timeoutMs: 5 * MIN,
        },
      );
      await cluster.kubectl(
        ['-n', SYSTEM_NS, 'rollout', 'status', 'daemonset/kata-node-agent', '--timeout=240s'],
        {
          timeoutMs: 5 * MIN,
        },
      );
      const controllers = await cluster.pods('kata-controller');
      expect(controllers.filter(isReady)).toHaveLength(2);
      for (const p of controllers) {
        expect(p.spec.serviceAccountName).toBe('kata-controller');
        expect(p.spec.containers[0]?.image).toBe(CLUSTER_IMAGE);
      }
      const agent = await readyAgent();
      expect(agent.spec.serviceAccountName).toBe('kata-node-agent');
      expect(agent.spec.nodeName).toBe(NODE);
      // Each talks to the API with its own token: the leader holds the election Lease, the agent
      // its node's.
      const leader = await waitFor(
        'a controller leader',
        () => leaseHolder('kata-controller'),
        2 * MIN,
      );
      expect(controllers.map((p) => p.metadata.name)).toContain(leader);
      await waitFor('the node Lease', () => leaseHolder(`kata-node-${NODE}`), 2 * MIN);
    },
    12 * MIN,
  );

  it(
    'a sandbox goes Ready through the installed Pods; its QEMU lives in cgroups of its own',
    async () => {
      rmSync(ROOTFS, { recursive: true, force: true });
      busyboxRootfs(ROOTFS);
      await cluster.kubectl(['create', 'namespace', NS]);
      await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(sandboxSpec('first')) });
      const sb = await readySandbox('first');
      const pid = sb.status?.vm?.pid ?? 0;
      expect(sb.status?.nodeName).toBe(NODE);
      expect(sb.metadata.labels?.['kata.sandbox.io/node']).toBe(NODE);
      // Its cgroups are kata-sandboxes/<uid>, not the agent Pod's under the kubelet's kata-cluster/.
      expect(cgroupOf(pid, 'memory')).toBe(`/kata-sandboxes/${sb.metadata.uid}`);
      expect(cgroupOf(pid, 'pids')).toBe(`/kata-sandboxes/${sb.metadata.uid}`);
      const limit = Number(
        readFileSync(
          `/sys/fs/cgroup/memory/kata-sandboxes/${sb.metadata.uid}/memory.limit_in_bytes`,
          'utf8',
        ),
      );
      // Guest + QEMU overhead, and the translation cache under TCG.
      const expected = vmMemoryLimit(
        512,
        256,
        sb.status?.vm?.accelerator ?? 'tcg',
        TCG_TRANSLATION_CACHE_MIB,
      );
      expect(limit).toBe(expected.totalMiB * 1024 * 1024);
      // What the VM holds is on the node's Lease for whoever plans the node (the kubelet does not
      // see it: docs/operations.md "VM cgroups").
      await waitFor(
        'the allocation on the node Lease',
        async () => {
          const lease = await cluster.json<{ metadata: { annotations?: Record<string, string> } }>([
            ...['-n', SYSTEM_NS, 'get', 'lease', `kata-node-${NODE}`],
          ]);
          const a = lease.metadata.annotations ?? {};
          return a['kata.sandbox.io/allocated-memory-mib'] === '512' &&
            a['kata.sandbox.io/allocated-vcpus'] === '1'
            ? a
            : undefined;
        },
        MIN,
      );
      firstQemu = { pid, start: startTimeOf(pid) ?? '', uid: sb.metadata.uid };
      expect(firstQemu.start).not.toBe('');
    },
    6 * MIN,
  );

  it(
    "kata-api runs as 2 Pods behind its APIService: an edit user's `kubectl kata` execs in and reads the log through the aggregator",
    async () => {
      await cluster.kubectl(
        ['-n', SYSTEM_NS, 'rollout', 'status', 'deployment/kata-api', '--timeout=240s'],
        { timeoutMs: 5 * MIN },
      );
      const apis = await cluster.pods('kata-api');
      expect(apis.filter(isReady)).toHaveLength(2);
      for (const p of apis) expect(p.spec.serviceAccountName).toBe('kata-api');
      await cluster.kubectl(
        [
          ...['wait', '--for=condition=Available', '--timeout=180s'],
          'apiservice/v1alpha1.subresources.kata.sandbox.io',
        ],
        { timeoutMs: 4 * MIN },
      );
      // A namespace user as an operator would make one: a ServiceAccount's token, bound to edit.
      await cluster.kubectl(['-n', NS, 'create', 'serviceaccount', 'kata-user']);
      await cluster.kubectl([
        ...['-n', NS, 'create', 'rolebinding', 'kata-user', '--clusterrole=kata-sandbox-edit'],
        `--serviceaccount=${NS}:kata-user`,
      ]);
      const token = (await cluster.kubectl(['-n', NS, 'create', 'token', 'kata-user'])).trim();
      const kubeconfig = await cluster.tokenKubeconfig(
        token,
        path.join(path.dirname(cluster.kubeconfig), 'kata-user.kubeconfig'),
      );
      const kata = (args: string[]) =>
        runProgram(KUBECTL_KATA, ['--kubeconfig', kubeconfig, '-n', NS, ...args]);
      expect(await kata(['exec', 'ksb/first', '--', 'sh', '-c', 'echo $((6*7)); exit 3'])).toEqual({
        code: 3,
        stdout: '42\n',
        stderr: 'command terminated with exit code 3\n',
      });
      const logs = await kata(['logs', 'ksb/first']);
      expect(logs).toMatchObject({ code: 0, stderr: '' });
      expect(logs.stdout).toContain('ready');
      await cluster.kubectl(['-n', NS, 'delete', 'rolebinding,serviceaccount', 'kata-user']);
    },
    10 * MIN,
  );

  it(
    'kubectl delete pod of the node agent: the new Pod adopts the same QEMU',
    async () => {
      const old = await readyAgent();
      await cluster.kubectl(['-n', SYSTEM_NS, 'delete', 'pod', old.metadata.name, '--wait=true'], {
        timeoutMs: 2 * MIN,
      });
      expect(startTimeOf(firstQemu.pid)).toBe(firstQemu.start);
      const fresh = await readyAgent(old.metadata.name);
      const logs = await cluster.kubectl(['-n', SYSTEM_NS, 'logs', fresh.metadata.name]);
      expect(logs).toContain('adopted the running VM');
      expect(startTimeOf(firstQemu.pid)).toBe(firstQemu.start);
      const sb = await getSandbox('first');
      expect(sb.status?.phase).toBe('Running');
      expect(sb.status?.vm?.pid).toBe(firstQemu.pid);
    },
    5 * MIN,
  );

  it(
    'an image change rolls the DaemonSet; the VM keeps running, adopted by the new version',
    async () => {
      const next = `${REGISTRY}/kata-sandbox-operator:dev-next`;
      await run(
        'buildah',
        ['push', '--quiet', '--tls-verify=false', LOCAL_IMAGE, `docker://${next}`],
        {
          timeoutMs: 5 * MIN,
        },
      );
      const old = await readyAgent();
      await cluster.kubectl([
        '-n',
        SYSTEM_NS,
        'set',
        'image',
        'daemonset/kata-node-agent',
        `node-agent=${next}`,
      ]);
      await cluster.kubectl(
        ['-n', SYSTEM_NS, 'rollout', 'status', 'daemonset/kata-node-agent', '--timeout=240s'],
        {
          timeoutMs: 5 * MIN,
        },
      );
      const fresh = await readyAgent(old.metadata.name);
      expect(fresh.spec.containers[0]?.image).toBe(next);
      expect(await cluster.kubectl(['-n', SYSTEM_NS, 'logs', fresh.metadata.name])).toContain(
        'adopted the running VM',
      );
      expect(startTimeOf(firstQemu.pid)).toBe(firstQemu.start);
      expect((await getSandbox('first')).status?.phase).toBe('Running');
    },
    8 * MIN,
  );

  it(
    "the controller leader's Pod deleted: the other replica leads and schedules a new sandbox",
    async () => {
      const leader = await leaseHolder('kata-controller');
      await cluster.kubectl(['-n', SYSTEM_NS, 'delete', 'pod', leader ?? '', '--wait=false']);
      const next = await waitFor(
        'another controller replica to lead',
        async () => {
          const h = await leaseHolder('kata-controller');
          return h && h !== leader ? h : undefined;
        },
        3 * MIN,
      );
      expect(next).not.toBe(leader);
      await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(sandboxSpec('second')) });
      const sb = await readySandbox('second');
      expect(sb.status?.nodeName).toBe(NODE);
      await cluster.kubectl(['-n', NS, 'delete', 'ksb', 'second', '--timeout=120s'], {
        timeoutMs: 3 * MIN,
      });
    },
    8 * MIN,
  );

  it(
    "RBAC and the admission policies hold against the Pods' own tokens",
    async () => {
      const agent = await readyAgent();
      const token = (
        await cluster.kubectl([
          ...['-n', SYSTEM_NS, 'exec', agent.metadata.name, '--'],
          ...['cat', '/var/run/secrets/kubernetes.io/serviceaccount/token'],
        ])
      ).trim();
      const asAgent = (args: string[]) => cluster.withToken(token, args);
      const who = JSON.parse(await asAgent(['auth', 'whoami', '-o', 'json'])) as {
        status: { userInfo: { username: string; extra?: Record<string, string[]> } };
      };
      expect(who.status.userInfo.username).toBe(
        'system:serviceaccount:kata-system:kata-node-agent',
      );
      expect(who.status.userInfo.extra?.['authentication.kubernetes.io/node-name']).toEqual([NODE]);
      // RBAC: a node agent creates no sandboxes.
      await expect(
        cluster.withToken(token, ['create', '-f', '-'], {
          input: JSON.stringify(sandboxSpec('forged')),
        }),
      ).rejects.toThrow(/forbidden/);
      // The policy: only its own node's Lease.
      await expect(
        cluster.withToken(token, ['-n', SYSTEM_NS, 'create', '-f', '-'], {
          input: JSON.stringify({
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: 'kata-node-elsewhere' },
            spec: { holderIdentity: 'elsewhere' },
          }),
        }),
      ).rejects.toThrow(/kata-node-agent-restriction/);
      // The controller's token: no Pods, and the node label only from it.
      const controller = (await cluster.pods('kata-controller')).find(isReady);
      const ctoken = (
        await cluster.kubectl([
          ...['-n', SYSTEM_NS, 'exec', controller?.metadata.name ?? '', '--'],
          ...['cat', '/var/run/secrets/kubernetes.io/serviceaccount/token'],
        ])
      ).trim();
      await expect(
        cluster.withToken(ctoken, ['-n', NS, 'run', 'x', `--image=${CLUSTER_IMAGE}`]),
      ).rejects.toThrow(/forbidden/);
      // The admin may not set the node label: only the controller places sandboxes.
      await expect(
        cluster.kubectl([
          '-n',
          NS,
          'label',
          'ksb',
          'first',
          'kata.sandbox.io/node=elsewhere',
          '--overwrite',
        ]),
      ).rejects.toThrow(/kata-sandbox-node-label/);
    },
    3 * MIN,
  );

  it(
    'Prometheus scrapes both components through their metrics Services, over HTTPS with a ServiceAccount token RBAC allows',
    async () => {
      const targets = async (service: string) => {
        const slices = await cluster.json<{
          items: {
            endpoints: { addresses: string[] }[];
            ports: { name: string; port: number }[];
          }[];
        }>([
          '-n',
          SYSTEM_NS,
          'get',
          'endpointslices',
          '-l',
          `kubernetes.io/service-name=${service}`,
        ]);
        return slices.items.flatMap((s) => {
          const port = s.ports.find((p) => p.name === 'https-metrics')?.port;
          return s.endpoints.flatMap((e) => e.addresses.map((a) => `${a}:${port}`));
        });
      };
      const controllerTargets = await waitFor(
        'two controller endpoints',
        async () => {
          const t = await targets('kata-controller-metrics');
          return t.length === 2 ? t : undefined;
        },
        2 * MIN,
      );
      const agentTargets = await targets('kata-node-agent-metrics');
      expect(agentTargets).toEqual(['10.244.77.1:8081']);
      // Prometheus' identity: a ServiceAccount bound to ClusterRole kata-metrics-reader as
      // deploy/monitoring/ ships it; a second one without the binding.
      const readerRole = parseAllDocuments(
        readFileSync(path.join(REPO, 'deploy/monitoring/metrics-reader.yaml'), 'utf8'),
      )
        .map((d) => d.toJS() as { kind: string })
        .find((o) => o.kind === 'ClusterRole');
      await cluster.kubectl(['apply', '--server-side', '-f', '-'], {
        input: JSON.stringify(readerRole),
      });
      await cluster.kubectl(['-n', NS, 'create', 'serviceaccount', 'prometheus']);
      await cluster.kubectl(['-n', NS, 'create', 'serviceaccount', 'nobody']);
      await cluster.kubectl([
        ...['create', 'clusterrolebinding', 'kata-metrics-reader-test'],
        ...['--clusterrole=kata-metrics-reader', `--serviceaccount=${NS}:prometheus`],
      ]);
      const token = (await cluster.kubectl(['-n', NS, 'create', 'token', 'prometheus'])).trim();
      const nobody = (await cluster.kubectl(['-n', NS, 'create', 'token', 'nobody'])).trim();
      const dir = mkdtempSync(path.join(tmpdir(), 'cluster-prometheus-'));
      const tokenFile = path.join(dir, 'token');
      writeFileSync(tokenFile, token, { mode: 0o600 });
      // Each endpoint: 200 with the token, 403 without the permission, 401 without a token or
      // with garbage; the probes' paths open.
      for (const t of [...controllerTargets, ...agentTargets]) {
        const url = (p: string) => `https://${t}${p}`;
        const allowed = await httpsGet(url('/metrics'), { token });
        expect({ t, status: allowed.status }).toEqual({ t, status: 200 });
        expect(allowed.body).toMatch(/^kata_(controller|node)_/m);
        const forbidden = await httpsGet(url('/metrics'), { token: nobody });
        expect({ t, status: forbidden.status }).toEqual({ t, status: 403 });
        expect(forbidden.body).toContain(`system:serviceaccount:${NS}:nobody`);
        expect((await httpsGet(url('/metrics'))).status).toBe(401);
        expect((await httpsGet(url('/metrics'), { token: 'garbage' })).status).toBe(401);
        expect((await httpsGet(url('/healthz'))).status).toBe(200);
      }
      prometheus = await startPrometheus(dir, [
        { job: 'kata-controller', targets: controllerTargets, https: { tokenFile } },
        { job: 'kata-node-agent', targets: agentTargets, https: { tokenFile } },
      ]);
      const p = prometheus;
      const up = await waitFor(
        'both jobs up',
        async () => {
          const r = await p.query('up == 1');
          return r.length === 3 ? r : undefined;
        },
        2 * MIN,
      );
      expect(up.map((v) => v.metric['job']).sort()).toEqual([
        'kata-controller',
        'kata-controller',
        'kata-node-agent',
      ]);
      const sandboxes = await waitFor(
        'the node agent reporting its QEMU',
        async () => {
          const r = await p.query('kata_node_qemu_processes >= 1');
          return r.length > 0 ? r : undefined;
        },
        MIN,
      );
      expect(sandboxes.length).toBeGreaterThan(0);
      await p.stop();
      prometheus = undefined;
      rmSync(dir, { recursive: true, force: true });
      await cluster.kubectl(['delete', 'clusterrolebinding', 'kata-metrics-reader-test']);
      await cluster.kubectl(['delete', 'clusterrole', 'kata-metrics-reader']);
      await cluster.kubectl(['-n', NS, 'delete', 'serviceaccount', 'prometheus', 'nobody']);
    },
    6 * MIN,
  );

  it(
    'make undeploy removes everything and leaves no QEMU, mount, tap, cgroup or sandbox state on the host',
    async () => {
      await run('make', ['--no-print-directory', 'undeploy', `DEPLOY_DIR=${OVERLAY}`], {
        timeoutMs: 12 * MIN,
        env: { ...process.env, KUBECONFIG: cluster.kubeconfig },
      });
      expect(startTimeOf(firstQemu.pid)).toBeUndefined();
      await expect(
        cluster.kubectl(['get', 'crd', 'katasandboxes.kata.sandbox.io']),
      ).rejects.toThrow(/NotFound/);
      await waitFor(
        'namespace kata-system gone',
        async () =>
          (await cluster.kubectl(['get', 'namespace', SYSTEM_NS, '--ignore-not-found'])).trim() ===
          ''
            ? true
            : undefined,
        5 * MIN,
      );
      const snap = await hostSnapshot();
      expect(snap.processes.filter((p) => p.startsWith('qemu'))).toEqual([]);
      expect(snap.mounts.filter((m) => m.startsWith('/run/kata-containers'))).toEqual([]);
      expect(snap.links.filter((l) => l.startsWith('tap') || l.startsWith('kata'))).toEqual([
        'kata-cni0',
      ]);
      expect(snap.cgroups.filter((c) => c.includes('/kata-sandboxes/'))).toEqual([]);
      const states = path.join('/var/lib/kata-node-agent', 'sandboxes');
      expect(readdirSafe(states)).toEqual([]);
      await cluster.kubectl(['delete', 'namespace', NS, '--wait=false']);
    },
    15 * MIN,
  );

  it(
    'hack/cluster.sh down leaves the host exactly as it was before up',
    async () => {
      await run(CLUSTER_SCRIPT, ['down'], { timeoutMs: 5 * MIN });
      rmSync(ROOTFS, { recursive: true, force: true });
      const after = await hostSnapshot();
      expect(after).toEqual(before);
    },
    6 * MIN,
  );
});

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

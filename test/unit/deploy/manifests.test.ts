// deploy/ as `kubectl kustomize` (the machine's /usr/bin/kubectl) renders it, checked against the
// code it runs: every environment variable the manifests set is one the component reads (from
// its --help text), every directory the node agent is configured with is a host path mounted at
// the same place, the controller runs unprivileged, RBAC stays least-privilege, the policies
// refer to the ServiceAccounts deploy/ creates, and the optional monitoring component renders on
// top of the base with alert rules promtool accepts. The integration tests apply the same render
// to a real API server (test/integration/deploy.test.ts, admission-policy.test.ts).
import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { CONTROLLER_HELP } from '../../../src/controllers/controller-config.js';
import { NODE_AGENT_HELP } from '../../../src/node-agent/config.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/* eslint-disable @typescript-eslint/no-explicit-any -- manifests are walked as plain JSON */
type Obj = Record<string, any>;

function render(dir: string): Obj[] {
  const text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  return parseAllDocuments(text).map((d) => d.toJS() as Obj);
}

const objs = render(path.join(REPO, 'deploy'));
const find = (kind: string, name: string): Obj => {
  const o = objs.find((x) => x['kind'] === kind && x['metadata']?.name === name);
  if (!o) throw new Error(`${kind}/${name} is not in deploy/`);
  return o;
};
const envNames = (help: string): Set<string> =>
  new Set([...help.matchAll(/\[([A-Z_]+)\]/g)].map((m) => m[1] ?? ''));
const envOf = (c: Obj): Map<string, Obj> =>
  new Map((c['env'] as Obj[]).map((e) => [e['name'] as string, e]));

const controller = find('Deployment', 'kata-controller');
const agent = find('DaemonSet', 'kata-node-agent');
const cPod = controller['spec'].template.spec;
const aPod = agent['spec'].template.spec;
const cCtr = cPod.containers[0] as Obj;
const aCtr = aPod.containers[0] as Obj;

describe('deploy/ renders', () => {
  it('every object is labelled part-of the operator, and namespaced ones live in kata-system', () => {
    expect(objs.length).toBeGreaterThan(15);
    for (const o of objs) {
      expect(o['metadata'].labels?.['app.kubernetes.io/part-of']).toBe('kata-sandbox-operator');
      if (o['metadata'].namespace) expect(o['metadata'].namespace).toBe('kata-system');
    }
    expect(find('Namespace', 'kata-system')['metadata'].labels).toMatchObject({
      'pod-security.kubernetes.io/enforce': 'privileged',
    });
    expect(objs.some((o) => o['kind'] === 'KataSandbox')).toBe(false); // samples are separate
  });
});

describe('the controller Deployment', () => {
  it('runs 2 leader-elected replicas with the controller binary and only known settings', () => {
    expect(controller['spec'].replicas).toBe(2);
    expect(cCtr['command']).toEqual(['kata-controller']);
    const env = envOf(cCtr);
    const known = envNames(CONTROLLER_HELP);
    for (const name of env.keys()) {
      expect({ name, known: known.has(name) || name === 'LOG_LEVEL' }).toEqual({
        name,
        known: true,
      });
    }
    expect(env.get('LEADER_ELECT')?.['value']).toBe('true');
    expect(env.get('POD_NAME')?.['valueFrom']).toEqual({
      fieldRef: { fieldPath: 'metadata.name' },
    });
    expect(cPod.serviceAccountName).toBe('kata-controller');
  });

  it('is unprivileged: non-root, read-only root filesystem, no escalation, no capabilities', () => {
    expect(cPod.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(cPod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(cCtr['securityContext']).toMatchObject({
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(cPod.hostPID ?? false).toBe(false);
    expect(cPod.hostNetwork ?? false).toBe(false);
    expect(JSON.stringify(cPod.volumes)).not.toContain('hostPath');
  });

  it('has HTTPS probes on its secure metrics port, resources, and an HTTPS Service on the same port', () => {
    const port = Number(envOf(cCtr).get('METRICS_PORT')?.['value']);
    expect(envOf(cCtr).get('METRICS_SECURE')?.['value']).toBe('true');
    expect(cCtr['ports']).toEqual([
      { name: 'https-metrics', containerPort: port, protocol: 'TCP' },
    ]);
    expect(cCtr['livenessProbe'].httpGet).toEqual({
      path: '/healthz',
      port: 'https-metrics',
      scheme: 'HTTPS',
    });
    expect(cCtr['readinessProbe'].httpGet).toEqual({
      path: '/readyz',
      port: 'https-metrics',
      scheme: 'HTTPS',
    });
    expect(cCtr['resources'].requests).toMatchObject({ cpu: expect.any(String) });
    expect(cCtr['resources'].limits).toMatchObject({ memory: expect.any(String) });
    const svc = find('Service', 'kata-controller-metrics');
    expect(svc['spec'].selector).toEqual(controller['spec'].selector.matchLabels);
    expect(svc['spec'].ports[0]).toMatchObject({
      name: 'https-metrics',
      appProtocol: 'https',
      port,
      targetPort: 'https-metrics',
    });
  });
});

describe('the node agent DaemonSet', () => {
  const env = envOf(aCtr);
  const val = (n: string): string => String(env.get(n)?.['value'] ?? '');
  const mounts = aCtr['volumeMounts'] as Obj[];
  const volumes = new Map((aPod.volumes as Obj[]).map((v) => [v['name'] as string, v]));
  const mountAt = (p: string): Obj | undefined => mounts.find((m) => m['mountPath'] === p);
  const hostPathAt = (p: string): string | undefined => {
    const m = mountAt(p);
    return m ? volumes.get(m['name'])?.['hostPath']?.path : undefined;
  };

  it('is privileged on the host network and PID namespace', () => {
    expect(aCtr['securityContext']).toMatchObject({ privileged: true });
    expect(aPod.hostPID).toBe(true);
    expect(aPod.hostNetwork).toBe(true);
    expect(aPod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(aCtr['command']).toEqual(['kata-node-agent']);
  });

  it('sets only settings the node agent reads, its node from the downward API', () => {
    const known = envNames(NODE_AGENT_HELP);
    for (const name of env.keys()) {
      expect({ name, known: known.has(name) || name === 'LOG_LEVEL' }).toEqual({
        name,
        known: true,
      });
    }
    expect(env.get('NODE_NAME')?.['valueFrom']).toEqual({
      fieldRef: { fieldPath: 'spec.nodeName' },
    });
  });

  it('mounts each directory it is configured with from the same host path', () => {
    const dirs = [
      val('STATE_DIR'),
      val('RUN_DIR'),
      val('LOG_DIR'),
      val('CNI_CONF_DIR'),
      ...['ALLOWED_HOST_PATH_ROOTS', 'NETNS_ROOTS', 'CNI_BIN_DIRS'].flatMap((n) =>
        val(n).split(','),
      ),
    ];
    expect(dirs.every((d) => d.startsWith('/'))).toBe(true);
    for (const d of dirs) expect({ d, host: hostPathAt(d) }).toEqual({ d, host: d });
    // Mounts made inside (9p share binds, network namespaces, image views under the state dir)
    // must reach the host and the next agent.
    for (const d of [val('RUN_DIR'), val('STATE_DIR'), ...val('NETNS_ROOTS').split(',')]) {
      expect({ d, prop: mountAt(d)?.['mountPropagation'] }).toEqual({ d, prop: 'Bidirectional' });
    }
    expect(val('RUN_DIR')).toBe('/run/kata-containers');
  });

  it("sees the node's devices by being privileged, with no hostPath that fails without /dev/kvm", () => {
    // A CharDevice hostPath keeps the Pod from starting on a node without KVM, where TCG works.
    expect(aCtr['securityContext']?.privileged).toBe(true);
    const hostPaths = [...volumes.values()].map((v) => v['hostPath']).filter(Boolean) as Obj[];
    expect(hostPaths.filter((h) => String(h['path']).startsWith('/dev'))).toEqual([]);
  });

  it('authenticates with a projected token bound to its Pod, not the automounted one', () => {
    expect(aPod.automountServiceAccountToken).toBe(false);
    expect(aPod.serviceAccountName).toBe('kata-node-agent');
    const sa = mountAt('/var/run/secrets/kubernetes.io/serviceaccount');
    const sources = volumes.get(sa?.['name'])?.['projected']?.sources as Obj[];
    expect(sources.map((s) => Object.keys(s)[0])).toEqual([
      'serviceAccountToken',
      'configMap',
      'downwardAPI',
    ]);
    expect(sources[0]?.['serviceAccountToken'].path).toBe('token');
  });

  it('is replaced only when the admin deletes its Pod, and is node-critical', () => {
    expect(agent['spec'].updateStrategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 1, maxSurge: 0 },
    });
    expect(aPod.priorityClassName).toBe('system-node-critical');
    expect(aPod.nodeSelector).toBeDefined();
    expect(aPod.tolerations.length).toBeGreaterThan(0);
  });

  it("puts VMs in cgroups of the host's hierarchies, so its own memory limit is the agent's alone", () => {
    const root = val('CGROUP_ROOT');
    expect(mountAt(root)?.['mountPropagation']).toBe('HostToContainer');
    expect(volumes.get(mountAt(root)?.['name'])?.['hostPath']).toEqual({
      path: '/sys/fs/cgroup',
      type: 'Directory',
    });
    expect(val('VM_CGROUP_PARENT')).toBe('kata-sandboxes');
    expect(Number(val('VM_MEMORY_OVERHEAD_MIB'))).toBeGreaterThan(0);
    expect(aCtr['resources'].limits?.memory).toBe('1Gi');
  });

  it('serves metrics (HTTPS, authenticated) and probes on its METRICS_PORT, behind a headless Service', () => {
    const port = Number(val('METRICS_PORT'));
    expect(val('METRICS_SECURE')).toBe('true');
    expect(aCtr['ports']).toEqual([
      { name: 'https-metrics', containerPort: port, protocol: 'TCP' },
    ]);
    for (const [probe, p] of [
      ['livenessProbe', '/healthz'],
      ['readinessProbe', '/readyz'],
      ['startupProbe', '/healthz'],
    ] as const) {
      expect(aCtr[probe].httpGet).toEqual({ path: p, port: 'https-metrics', scheme: 'HTTPS' });
    }
    const svc = find('Service', 'kata-node-agent-metrics');
    expect(svc['spec'].ports[0]).toMatchObject({
      name: 'https-metrics',
      appProtocol: 'https',
      port,
      targetPort: 'https-metrics',
    });
    expect(svc['spec'].clusterIP).toBe('None');
    expect(svc['spec'].selector).toEqual(agent['spec'].selector.matchLabels);
  });
});

describe('RBAC', () => {
  const rules = (kind: string, name: string): Obj[] => find(kind, name)['rules'] as Obj[];
  const grants = (rs: Obj[]): string[] =>
    rs.flatMap((r) =>
      (r['resources'] as string[]).flatMap((res) =>
        (r['verbs'] as string[]).map((v) => `${r['apiGroups'][0] || 'core'}/${res}:${v}`),
      ),
    );

  it('the node agent reads sandboxes, patches them and their status, reads warm pools and its Node, writes its pool entries, Events and Leases, nothing else cluster-wide', () => {
    expect(grants(rules('ClusterRole', 'kata-node-agent')).sort()).toEqual(
      [
        'kata.sandbox.io/katasandboxes:get',
        'kata.sandbox.io/katasandboxes:list',
        'kata.sandbox.io/katasandboxes:watch',
        'kata.sandbox.io/katasandboxes:patch',
        'kata.sandbox.io/katasandboxes/status:patch',
        'kata.sandbox.io/katawarmpools:get',
        'kata.sandbox.io/katawarmpools:list',
        'kata.sandbox.io/katawarmpools:watch',
        'kata.sandbox.io/katawarmpools/status:patch',
        'core/nodes:get',
        'events.k8s.io/events:create',
        'events.k8s.io/events:patch',
        'authentication.k8s.io/tokenreviews:create',
        'authorization.k8s.io/subjectaccessreviews:create',
      ].sort(),
    );
    const leases = find('Role', 'kata-node-agent-leases');
    expect(leases['metadata'].namespace).toBe('kata-system');
    expect(grants(leases['rules']).every((g) => g.startsWith('coordination.k8s.io/leases:'))).toBe(
      true,
    );
    expect(grants(leases['rules'])).not.toContain('coordination.k8s.io/leases:delete');
  });

  it('the controller reads and patches sandboxes and their status, reads Nodes, writes Events', () => {
    expect(grants(rules('ClusterRole', 'kata-controller')).sort()).toEqual(
      [
        'kata.sandbox.io/katasandboxes:get',
        'kata.sandbox.io/katasandboxes:list',
        'kata.sandbox.io/katasandboxes:watch',
        'kata.sandbox.io/katasandboxes:patch',
        'kata.sandbox.io/katasandboxes/status:patch',
        'kata.sandbox.io/katawarmpools:get',
        'kata.sandbox.io/katawarmpools:list',
        'kata.sandbox.io/katawarmpools:watch',
        'kata.sandbox.io/katawarmpools/status:patch',
        'core/nodes:get',
        'core/nodes:list',
        'core/nodes:watch',
        'events.k8s.io/events:create',
        'events.k8s.io/events:patch',
        'core/secrets:get',
        'authentication.k8s.io/tokenreviews:create',
        'authorization.k8s.io/subjectaccessreviews:create',
      ].sort(),
    );
    // Leases in kata-system: read all (node agents'), create, and write only its election Lease.
    const leases = rules('Role', 'kata-controller-leases');
    const writes = leases.filter((r) =>
      (r['verbs'] as string[]).some((v) => /update|patch/.test(v)),
    );
    expect(writes.map((r) => r['resourceNames'])).toEqual([['kata-controller']]);
  });

  it('neither component deletes or touches Pods; only the controller reads Secrets cluster-wide, by name', () => {
    for (const [kind, name] of [
      ['ClusterRole', 'kata-controller'],
      ['Role', 'kata-controller-leases'],
      ['ClusterRole', 'kata-node-agent'],
      ['Role', 'kata-node-agent-leases'],
    ] as const) {
      const g = grants(rules(kind, name));
      expect(g.filter((x) => /:(delete|deletecollection|\*)$/.test(x))).toEqual([]);
      expect(g.filter((x) => /\/(pods|\*)/.test(x))).toEqual([]);
      const secrets = g.filter((x) => x.includes('/secrets'));
      expect(secrets).toEqual(name === 'kata-controller' ? ['core/secrets:get'] : []);
    }
  });

  it('pull secrets: the node agent gets Secrets in kata-system only (by name), the controller writes them there', () => {
    const agentRole = find('Role', 'kata-node-agent-pull-secrets');
    expect(agentRole['metadata'].namespace).toBe('kata-system');
    expect(grants(agentRole['rules'])).toEqual(['core/secrets:get']);
    const ctlRole = find('Role', 'kata-controller-pull-secrets');
    expect(ctlRole['metadata'].namespace).toBe('kata-system');
    expect(grants(ctlRole['rules']).sort()).toEqual(
      ['list', 'watch', 'create', 'update', 'delete'].map((v) => `core/secrets:${v}`).sort(),
    );
    // No cluster-wide binding gives the node agent any Secret.
    const agentSubject = (b: Obj): boolean =>
      (b['subjects'] as Obj[]).some(
        (x) => x['kind'] === 'ServiceAccount' && x['name'] === 'kata-node-agent',
      );
    for (const b of objs.filter((o) => o['kind'] === 'ClusterRoleBinding' && agentSubject(o))) {
      const g = grants(rules('ClusterRole', b['roleRef'].name as string));
      expect(g.filter((x) => x.includes('/secrets'))).toEqual([]);
    }
    const agentRoles = objs
      .filter((o) => o['kind'] === 'RoleBinding' && agentSubject(o))
      .map((b) => rules('Role', b['roleRef'].name as string));
    expect(agentRoles.flatMap(grants).filter((x) => x.includes('/secrets'))).toEqual([
      'core/secrets:get',
    ]);
  });

  it("user roles aggregate into admin/edit/view and never write sandboxes' status", () => {
    for (const [name, into] of [
      ['kata-sandbox-admin', 'admin'],
      ['kata-sandbox-edit', 'edit'],
      ['kata-sandbox-view', 'view'],
    ] as const) {
      const role = find('ClusterRole', name);
      expect(role['metadata'].labels[`rbac.authorization.k8s.io/aggregate-to-${into}`]).toBe(
        'true',
      );
      const g = grants(role['rules']);
      expect(g.filter((x) => /status:(create|update|patch)/.test(x))).toEqual([]);
      if (into === 'view') expect(g.filter((x) => !/:(get|list|watch)$/.test(x))).toEqual([]);
    }
  });

  it('every binding names a ServiceAccount deploy/ creates and a role it defines', () => {
    for (const b of objs.filter((o) => /Binding$/.test(o['kind']) && o['subjects'])) {
      for (const s of b['subjects'] as Obj[]) {
        expect(find('ServiceAccount', s['name'])['metadata'].namespace).toBe(s['namespace']);
      }
      expect(() => find(b['roleRef'].kind, b['roleRef'].name)).not.toThrow();
    }
  });
});

describe('admission policies', () => {
  it('each policy fails closed and is bound with Deny, naming the ServiceAccounts deploy/ creates', () => {
    const policies = objs.filter((o) => o['kind'] === 'ValidatingAdmissionPolicy');
    expect(policies.map((p) => p['metadata'].name).sort()).toEqual([
      'kata-controller-restriction',
      'kata-node-agent-event-sandbox',
      'kata-node-agent-events',
      'kata-node-agent-restriction',
      'kata-node-agent-warm-pools',
      'kata-node-pull-secret-key',
      'kata-pull-secret-projections',
      'kata-sandbox-netns',
      'kata-sandbox-node-label',
    ]);
    for (const p of policies) {
      expect(p['spec'].failurePolicy).toBe('Fail');
      const binding = objs.find(
        (o) =>
          o['kind'] === 'ValidatingAdmissionPolicyBinding' &&
          o['spec'].policyName === p['metadata'].name,
      );
      expect(binding?.['spec'].validationActions).toEqual(['Deny']);
      for (const m of JSON.stringify(p['spec']).matchAll(
        /system:serviceaccount:([\w-]+):([\w-]+)/g,
      )) {
        if (m[1] === 'kube-system') continue; // the cluster's own (the namespace controller)
        expect(find('ServiceAccount', m[2] ?? '')['metadata'].namespace).toBe(m[1]);
      }
    }
  });
});

describe('deploy/monitoring (optional component)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kata-overlay-'));
  let rendered: Obj[] = [];
  try {
    const rel = (p: string): string => path.relative(dir, path.join(REPO, p));
    writeFileSync(
      path.join(dir, 'kustomization.yaml'),
      stringify({ resources: [rel('deploy')], components: [rel('deploy/monitoring')] }),
    );
    rendered = render(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const get = (kind: string): Obj => rendered.find((o) => o['kind'] === kind) ?? {};

  const monitor = (name: string): Obj =>
    rendered.find((o) => o['kind'] === 'ServiceMonitor' && o['metadata']?.name === name) ?? {};

  it('is not in the base, and adds two ServiceMonitors, the metrics reader role and alert rules to it', () => {
    for (const kind of ['ServiceMonitor', 'PrometheusRule']) {
      expect(objs.some((o) => o['kind'] === kind)).toBe(false);
      expect(get(kind)['metadata']?.namespace).toBe('kata-system');
    }
    expect(objs.some((o) => o['metadata']?.name === 'kata-metrics-reader')).toBe(false);
    expect(rendered.length).toBe(objs.length + 5);
  });

  it('selects each metrics Service by its labels and port name, and scrapes it over HTTPS with a token', () => {
    for (const [name, service] of [
      ['kata-controller', 'kata-controller-metrics'],
      ['kata-node-agent', 'kata-node-agent-metrics'],
    ] as const) {
      const sm = monitor(name);
      const svc = find('Service', service);
      expect(svc['metadata'].labels).toMatchObject(sm['spec'].selector.matchLabels);
      const ep = sm['spec'].endpoints[0] as Obj;
      expect(svc['spec'].ports.map((p: Obj) => p['name'])).toContain(ep['port']);
      expect(ep).toMatchObject({
        path: '/metrics',
        scheme: 'https',
        bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
        tlsConfig: { insecureSkipVerify: true },
      });
    }
    expect(monitor('kata-node-agent')['spec'].endpoints[0].relabelings).toEqual([
      { sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node' },
    ]);
  });

  it('grants Prometheus get on /metrics and nothing else, through a binding to patch', () => {
    const role = rendered.find(
      (o) => o['kind'] === 'ClusterRole' && o['metadata']?.name === 'kata-metrics-reader',
    );
    expect(role?.['rules']).toEqual([{ nonResourceURLs: ['/metrics'], verbs: ['get'] }]);
    const binding = rendered.find(
      (o) => o['kind'] === 'ClusterRoleBinding' && o['metadata']?.name === 'kata-metrics-reader',
    );
    expect(binding?.['roleRef']).toMatchObject({
      kind: 'ClusterRole',
      name: 'kata-metrics-reader',
    });
    expect(binding?.['subjects'][0].kind).toBe('ServiceAccount');
  });

  it('has alert rules promtool accepts, on system failures and user errors apart, stuck Pending, node loss and RPC errors', () => {
    const groups = get('PrometheusRule')['spec'].groups as Obj[];
    const alerts = groups.flatMap((g) => (g['rules'] as Obj[]).map((r) => r['alert'] as string));
    expect(alerts).toEqual(
      expect.arrayContaining([
        'KataSandboxSystemFailures',
        'KataSandboxUserErrors',
        'KataSandboxesStuckPending',
        'KataNodeAgentDown',
        'KataAgentRPCErrors',
      ]),
    );
    const tmp = mkdtempSync(path.join(tmpdir(), 'kata-rules-'));
    try {
      const file = path.join(tmp, 'rules.yaml');
      writeFileSync(file, stringify({ groups }));
      const out = execFileSync('promtool', ['check', 'rules', file], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(out).toContain(`SUCCESS: ${alerts.length} rules found`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

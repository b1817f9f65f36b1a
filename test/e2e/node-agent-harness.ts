// Runs the real kata-node-agent (bundled from src/ with esbuild) as a child process with the
// ServiceAccount identity and RBAC from deploy/, against the test control plane; and prepares a
// busybox rootfs for its sandboxes.
import { CoreV1Api } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  adminKubeConfig,
  REPO_ROOT,
  serviceAccountKubeConfigPath,
  withBearerToken,
} from '../integration/cluster.js';
import { builtHostFsBinary } from '../integration/host-fs-binary.js';
import {
  bundleEntry,
  kubectl,
  spawnComponent,
  type RunningProcess,
} from '../integration/controller-harness.js';

export async function installNodeAgentRbac(): Promise<void> {
  await kubectl([
    'apply',
    '--server-side',
    '-f',
    path.join(REPO_ROOT, 'deploy/rbac/node-agent.yaml'),
  ]);
}

export interface NodeAgentDirs {
  stateDir: string;
  runDir: string;
  logDir: string;
  roots: string[];
}

export type RunningNodeAgent = RunningProcess;

export interface NodeBoundIdentity {
  /** A kubeconfig holding a token bound to a Pod on the node. */
  kubeconfig: string;
  /** Deletes the Pod (so the token dies) and the Node object. */
  remove(): Promise<void>;
}

/**
 * What a node agent Pod on `nodeName` holds in a cluster: a token of ServiceAccount
 * kata-system/kata-node-agent from the TokenRequest API, bound to a Pod on that node (a Node
 * object and a Pod that never runs: there is no kubelet), so the API server puts the node into
 * its user extra. Only with it does a node agent publish a pull-secret key and open projections.
 */
export async function nodeBoundIdentity(nodeName: string): Promise<NodeBoundIdentity> {
  const admin = await adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const namespace = 'kata-system';
  const podName = `kata-node-agent-${nodeName}`;
  await core.createNode({ body: { metadata: { name: nodeName } } }).catch((err: unknown) => {
    if ((err as { code?: number }).code !== 409) throw err;
  });
  const pod = await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name: podName },
      spec: {
        serviceAccountName: 'kata-node-agent',
        nodeName,
        containers: [{ name: 'main', image: 'kata-sandbox-operator' }],
      },
    },
  });
  const req = await core.createNamespacedServiceAccountToken({
    namespace,
    name: 'kata-node-agent',
    body: {
      spec: {
        audiences: [],
        expirationSeconds: 3 * 3600,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: podName, uid: pod.metadata?.uid },
      },
    },
  });
  const token = req.status?.token;
  if (!token) throw new Error(`TokenRequest for the node agent on ${nodeName} gave no token`);
  const kubeconfig = path.join(mkdtempSync(path.join(tmpdir(), 'kata-node-id-')), 'kubeconfig');
  writeFileSync(kubeconfig, withBearerToken(admin, token).exportConfig(), { mode: 0o600 });
  return {
    kubeconfig,
    async remove() {
      const gone = (err: unknown): void => {
        if ((err as { code?: number }).code !== 404) throw err;
      };
      await core
        .deleteNamespacedPod({ namespace, name: podName, gracePeriodSeconds: 0 })
        .catch(gone);
      await core.deleteNode({ name: nodeName }).catch(gone);
    },
  };
}

export async function startNodeAgent(
  nodeName: string,
  dirs: NodeAgentDirs,
  logFile: string,
  extraArgs: readonly string[] = [],
  identity?: NodeBoundIdentity,
): Promise<RunningNodeAgent> {
  const bundle = await bundleEntry('src/node-agent/main.ts', 'kata-node-agent');
  const kubeconfig =
    identity?.kubeconfig ?? (await serviceAccountKubeConfigPath('kata-system', 'kata-node-agent'));
  return spawnComponent(
    bundle,
    [
      '--kubeconfig',
      kubeconfig,
      '--node-name',
      nodeName,
      '--metrics-port',
      '0',
      // Plain HTTP on loopback: tests read /readyz and /metrics without a token.
      '--metrics-secure',
      'false',
      '--state-dir',
      dirs.stateDir,
      '--run-dir',
      dirs.runDir,
      '--log-dir',
      dirs.logDir,
      '--allowed-host-path-roots',
      dirs.roots.join(','),
      '--default-accelerator',
      'auto',
      '--host-fs-binary',
      builtHostFsBinary(),
      ...extraArgs,
    ],
    logFile,
  );
}

/** A minimal root filesystem: static busybox and its applets, and the usual mount points. */
export function makeBusyboxRootfs(dir: string, extraDirs: string[] = []): void {
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc', ...extraDirs]) {
    mkdirSync(path.join(dir, d), { recursive: true });
  }
  copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'));
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', path.join(dir, 'bin', a));
  writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\n');
}

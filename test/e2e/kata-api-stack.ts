// The stack the kata-api end-to-end tests share: the real control plane with its aggregation
// layer, the controller, a node agent and kata-api as processes, the APIService registered, a
// fresh namespace and a busybox rootfs under the node agent's allowed root. Users are bound to
// the roles of deploy/rbac/user-roles.yaml by name, their kubeconfigs defaulting to the namespace.
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, adminKubeConfig, freshNamespace } from '../integration/cluster.js';
import {
  grantElectionLease,
  installControllerPrereqs,
  kubectl,
  revokeElectionLease,
  startController,
  type RunningController,
} from '../integration/controller-harness.js';
import {
  unregisterApiService,
  userKubeConfig,
  type RunningKataApi,
  serveKataApi,
} from '../integration/kata-api-harness.js';
import {
  installNodeAgentRbac,
  makeBusyboxRootfs,
  startNodeAgent,
  type RunningNodeAgent,
} from './node-agent-harness.js';
import { ensureImage } from './sandbox-vm.js';
import { removeScratch, SandboxApi, waitForFile } from './sandbox-api.js';

export const KUBECTL_KATA = path.join(REPO_ROOT, 'bin/kubectl-kata');

export interface KataApiStack {
  /** Scratch directory (logs, state, files of the test). */
  base: string;
  /** A busybox root filesystem the node agent may share. */
  rootfs: string;
  namespace: string;
  sandboxes: SandboxApi;
  /** The node agent's plain-HTTP /metrics port. */
  metricsPort: number;
  /** A kubeconfig for user `user` bound to `clusterRole` in the namespace. */
  user(user: string, clusterRole: string): Promise<string>;
  /** Deletes `names` (waiting until they are gone), stops everything, removes the scratch. */
  stop(names: readonly string[]): Promise<void>;
}

/** Starts the stack; `id` names the node, namespace, election lease and scratch dir. */
export async function startKataApiStack(id: string): Promise<KataApiStack> {
  const node = `e2e-${id}-${process.pid}`;
  const electionId = `kata-controller-e2e-${id}-${process.pid}`;
  let controller: RunningController | undefined;
  let agent: RunningNodeAgent | undefined;
  let api: RunningKataApi | undefined;
  let sandboxes: SandboxApi | undefined;
  const base = mkdtempSync(`/tmp/${id}-e2e-`);

  const stop = async (names: readonly string[]): Promise<void> => {
    for (const n of sandboxes ? names : []) await sandboxes?.delete(n).catch(() => undefined);
    for (const n of sandboxes ? names : []) {
      await sandboxes
        ?.waitFor(n, 'deleted', (sb) => sb === undefined, 180_000)
        .catch(() => undefined);
    }
    await api?.stop();
    await unregisterApiService().catch(() => undefined);
    await agent?.stop('SIGKILL');
    await controller?.stop();
    await revokeElectionLease(electionId).catch(() => '');
    if (process.env['KATA_KEEP_LOGS'] !== '1') await removeScratch(base);
  };

  try {
    ensureImage();
    await installControllerPrereqs();
    await installNodeAgentRbac();
    for (const f of ['deploy/rbac/kata-api.yaml', 'deploy/rbac/user-roles.yaml']) {
      await kubectl(['apply', '--server-side', '-f', path.join(REPO_ROOT, f)]);
    }
    await grantElectionLease(electionId);
    const namespace = await freshNamespace(id);
    sandboxes = new SandboxApi(await adminKubeConfig(), namespace, node);
    const roots = path.join(base, 'roots');
    const rootfs = path.join(roots, 'busybox');
    makeBusyboxRootfs(rootfs);
    controller = await startController(node, { namespace, electionId });
    const agentLog = path.join(base, 'node-agent.log');
    agent = await startNodeAgent(
      node,
      {
        stateDir: path.join(base, 'state'),
        runDir: path.join(base, 'run'),
        logDir: path.join(base, 'logs'),
        roots: [roots],
      },
      agentLog,
    );
    const serving = /"port":(\d+)[^\n]*serving \/metrics/;
    const metricsPort = Number(serving.exec(await waitForFile(agentLog, serving))?.[1]);
    api = await serveKataApi(base);
    return {
      base,
      rootfs,
      namespace,
      sandboxes,
      metricsPort,
      async user(user, clusterRole) {
        await kubectl([
          ...['-n', namespace, 'create', 'rolebinding', user],
          ...[`--clusterrole=${clusterRole}`, `--user=${user}`],
        ]);
        const file = await userKubeConfig(user, user);
        await kubectl([
          ...['--kubeconfig', file, 'config', 'set-context', '--current'],
          `--namespace=${namespace}`,
        ]);
        return file;
      },
      stop,
    };
  } catch (err) {
    await stop([]);
    throw err;
  }
}

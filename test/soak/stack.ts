// The real stack the soak runs against, started with the e2e harness: the shared control plane
// (held as a Jest run holds it), the CRD and RBAC, one namespace, and the controller and node agent
// as processes the soak kills (-9) and starts again. Scratch (roots, state, run, logs) lives under
// one dir; teardown deletes the sandboxes while the node agent runs, then everything else.
import { mkdirSync, mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cgroupHierarchies } from '../../src/node-agent/cgroups/cgroup-hierarchies.js';
import { readMountInfo } from '../../src/node-agent/storage/mountinfo.js';
import { adminKubeConfig, freshNamespace } from '../integration/cluster.js';
import {
  grantElectionLease,
  installControllerPrereqs,
  kubectl,
  revokeElectionLease,
  startController,
  type RunningController,
} from '../integration/controller-harness.js';
import globalSetup from '../integration/global-setup.js';
import globalTeardown from '../integration/global-teardown.js';
import {
  installNodeAgentRbac,
  makeBusyboxRootfs,
  startNodeAgent,
  type NodeAgentDirs,
  type RunningNodeAgent,
} from '../e2e/node-agent-harness.js';
import { removeScratch, SandboxApi } from '../e2e/sandbox-api.js';

export class SoakStack {
  readonly node = `soak-${process.pid}`;
  readonly electionId = `kata-controller-soak-${process.pid}`;
  /** VM cgroups of this run's own: other node agents on the machine use the default parent. */
  readonly cgroupParent = `kata-soak-${process.pid}`;
  readonly base: string;
  readonly roots: string;
  readonly rootfs: string;
  readonly dirs: NodeAgentDirs;
  api!: SandboxApi;
  ns = '';
  agent: RunningNodeAgent | undefined;
  controller: RunningController | undefined;
  private agentRuns = 0;
  private controllerRuns = 0;

  constructor() {
    this.base = mkdtempSync(path.join(tmpdir(), 'kata-soak-'));
    this.roots = path.join(this.base, 'roots');
    this.rootfs = path.join(this.roots, 'busybox');
    this.dirs = {
      stateDir: path.join(this.base, 'state'),
      runDir: path.join(this.base, 'run'),
      logDir: path.join(this.base, 'logs'),
      roots: [this.roots],
    };
  }

  async start(): Promise<void> {
    await globalSetup();
    await installControllerPrereqs();
    await installNodeAgentRbac();
    await grantElectionLease(this.electionId);
    this.ns = await freshNamespace('soak');
    this.api = new SandboxApi(await adminKubeConfig(), this.ns, this.node);
    makeBusyboxRootfs(this.rootfs);
    mkdirSync(path.join(this.roots, 'volumes'), { recursive: true });
    await this.startController();
    await this.startAgent();
  }

  async startAgent(): Promise<void> {
    this.agentRuns += 1;
    this.agent = await startNodeAgent(
      this.node,
      this.dirs,
      path.join(this.base, `node-agent-${this.agentRuns}.log`),
      ['--vm-cgroup-parent', this.cgroupParent],
    );
  }

  async startController(): Promise<void> {
    this.controllerRuns += 1;
    this.controller = await startController(`soak-${process.pid}-${this.controllerRuns}`, {
      namespace: this.ns,
      electionId: this.electionId,
    });
  }

  /** Where sandbox `name`'s volume lives on the host (its containers count their runs there). */
  volumeDir(name: string): string {
    return path.join(this.roots, 'volumes', name);
  }

  async teardown(keepScratch: boolean): Promise<void> {
    const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      await fn().catch((err: unknown) => console.error(`soak teardown: ${what}: ${String(err)}`));
    };
    if (this.ns) {
      await step('delete the sandboxes', () =>
        kubectl(
          ['-n', this.ns, 'delete', 'katasandboxes', '--all', '--timeout=240s'],
          undefined,
          260_000,
        ),
      );
    }
    await step('stop the node agent', async () => this.agent?.stop('SIGKILL'));
    await step('stop the controller', async () => this.controller?.stop());
    await step('revoke the election lease', () => revokeElectionLease(this.electionId));
    await step('delete the node lease', () =>
      kubectl([
        '-n',
        'kata-system',
        'delete',
        'lease',
        `kata-node-${this.node}`,
        '--ignore-not-found',
      ]),
    );
    if (!keepScratch) await step('remove the scratch dir', () => removeScratch(this.base));
    // The VM cgroup parent the agent made, empty once its VMs are gone.
    await step('remove the cgroup parent', async () => {
      for (const h of cgroupHierarchies(await readMountInfo(), '/sys/fs/cgroup')) {
        try {
          rmdirSync(path.join(h.mountPoint, this.cgroupParent));
        } catch {
          // not there, or a VM's cgroup is still in it: the audit said so
        }
      }
    });
    await step('release the plane', () => globalTeardown());
  }
}

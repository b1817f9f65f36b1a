// The real stack the soak runs against, started with the e2e harness: the shared control plane
// (held as a Jest run holds it), the CRD and RBAC, one namespace, and the controller and node agent
// as processes the soak kills (-9) and starts again. Scratch (roots, state, run, logs) lives under
// one dir; teardown deletes the sandboxes while the node agent runs, then everything else.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cgroupHierarchies } from '../../src/node-agent/cgroups/cgroup-hierarchies.js';
import { readMountInfo } from '../../src/node-agent/storage/mountinfo.js';
import { adminKubeConfig, freshNamespace, KUBECONFIG_ENV } from '../integration/cluster.js';
import {
  grantElectionLease,
  installControllerPrereqs,
  kubectl,
  revokeElectionLease,
  startController,
  type RunningController,
  type RunningProcess,
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
import { SoakCni } from './cni.js';
import { SoakRegistry } from './registry.js';

export class SoakStack {
  readonly node = `soak-${process.pid}`;
  readonly electionId = `kata-controller-soak-${process.pid}`;
  /** VM cgroups of this run's own: other node agents on the machine use the default parent. */
  readonly cgroupParent = `kata-soak-${process.pid}`;
  readonly base: string;
  readonly roots: string;
  readonly rootfs: string;
  readonly dirs: NodeAgentDirs;
  /** Mode cni: the soak's node namespace, bridge and CNI config (its plugin a fault can break). */
  readonly cni: SoakCni;
  /** Image rootfs: the loopback registry behind the soak's gate (which a fault can stop). */
  registry!: SoakRegistry;
  api!: SandboxApi;
  ns = '';
  agent: RunningNodeAgent | undefined;
  controller: RunningController | undefined;
  private agentRuns = 0;
  private controllerRuns = 0;
  private closing = false;
  /** This stack holds the shared plane itself (the standalone `make soak`, not inside Jest). */
  private holdsPlane = false;
  private readonly madeNetns = new Set<string>();
  private readonly killed = new WeakSet<RunningProcess>();
  /** Exits nobody asked for, by component. */
  readonly exits = { 'node agent': 0, controller: 0 };
  /** Where the supervisor says what it did (the soak's log). */
  onEvent: (line: string) => void = (line) => console.log(line);

  /** The state dir is a small loop-mounted filesystem of its own, so a fault can fill it. */
  constructor(readonly stateOnLoop = false) {
    this.base = mkdtempSync(path.join(tmpdir(), 'kata-soak-'));
    this.roots = path.join(this.base, 'roots');
    this.rootfs = path.join(this.roots, 'busybox');
    this.dirs = {
      stateDir: path.join(this.base, 'state'),
      runDir: path.join(this.base, 'run'),
      logDir: path.join(this.base, 'logs'),
      roots: [this.roots],
    };
    this.cni = new SoakCni(this.base, String(process.pid));
  }

  async start(): Promise<void> {
    // Inside Jest the soak project's global setup already holds the shared plane for the whole
    // run (and runs in band, in this very process): only the standalone `make soak` holds it here.
    if (!process.env[KUBECONFIG_ENV]) {
      await globalSetup();
      this.holdsPlane = true;
    }
    await installControllerPrereqs();
    await installNodeAgentRbac();
    await grantElectionLease(this.electionId);
    this.ns = await freshNamespace('soak');
    this.api = new SandboxApi(await adminKubeConfig(), this.ns, this.node);
    makeBusyboxRootfs(this.rootfs);
    if (this.stateOnLoop) this.mountStateFs();
    mkdirSync(path.join(this.roots, 'volumes'), { recursive: true });
    mkdirSync(path.join(this.roots, 'blocks'), { recursive: true });
    this.makeBlockTemplate();
    this.cni.setup();
    this.registry = await SoakRegistry.start(this.base);
    await this.startController();
    await this.startAgent();
  }

  async startAgent(): Promise<void> {
    this.agentRuns += 1;
    const agent = await startNodeAgent(
      this.node,
      this.dirs,
      path.join(this.base, `node-agent-${this.agentRuns}.log`),
      [
        ...['--vm-cgroup-parent', this.cgroupParent],
        ...this.cni.agentArgs(),
        ...this.registry.agentArgs(),
      ],
    );
    this.agent = agent;
    this.supervise(
      'node agent',
      agent,
      () => this.agent,
      () => this.startAgent(),
    );
  }

  async startController(): Promise<void> {
    this.controllerRuns += 1;
    const controller = await startController(`soak-${process.pid}-${this.controllerRuns}`, {
      namespace: this.ns,
      electionId: this.electionId,
    });
    this.controller = controller;
    this.supervise(
      'controller',
      controller,
      () => this.controller,
      () => this.startController(),
    );
  }

  /** kill -9 (a fault): the supervisor leaves it down; the fault starts it again. */
  async kill(which: 'node agent' | 'controller'): Promise<number | undefined> {
    const proc = which === 'node agent' ? this.agent : this.controller;
    if (!proc) return undefined;
    this.killed.add(proc);
    await proc.stop('SIGKILL');
    return proc.child.pid;
  }

  /**
   * What a Deployment or DaemonSet does: a component that exits by itself (the controller exits
   * when it loses its election Lease, e.g. while kube-apiserver restarts) is started again, 1 s
   * later, unless something else started a new one meanwhile.
   */
  private supervise(
    what: 'node agent' | 'controller',
    proc: RunningProcess,
    current: () => RunningProcess | undefined,
    start: () => Promise<void>,
  ): void {
    proc.child.once('exit', (code, signal) => {
      if (this.closing || this.killed.has(proc)) return;
      this.exits[what] += 1;
      this.onEvent(
        `${what} ${proc.child.pid} exited by itself (${code ?? signal}); starting it again in 1 s`,
      );
      setTimeout(() => {
        if (this.closing || current() !== proc) return;
        start().catch((err: unknown) => this.onEvent(`starting the ${what} again: ${String(err)}`));
      }, 1000);
    });
  }

  private mountStateFs(): void {
    const image = path.join(this.base, 'state.img');
    execFileSync('truncate', ['-s', '32M', image], { timeout: 10_000 });
    execFileSync('mkfs.ext4', ['-q', '-F', image], { timeout: 60_000 });
    mkdirSync(this.dirs.stateDir, { recursive: true });
    execFileSync('mount', ['-o', 'loop', image, this.dirs.stateDir], { timeout: 30_000 });
  }

  private get fillers(): string[] {
    return ['soak-filler', 'soak-filler-tail'].map((f) => path.join(this.dirs.stateDir, f));
  }

  /**
   * Fills the state filesystem to the last block (ENOSPC for whoever writes next): 64 KiB writes
   * until one fails, then 1 KiB ones for what the last partial write left.
   */
  fillState(): void {
    if (!this.stateOnLoop) throw new Error('the state dir is not a filesystem of its own');
    for (const [file, bs] of this.fillers.map((f, i) => [f, i === 0 ? '64k' : '1k'] as const)) {
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${file}`, `bs=${bs}`], {
          timeout: 60_000,
          stdio: 'ignore',
        });
      } catch {
        // dd ends with ENOSPC: what it is for
      }
    }
  }

  emptyState(): void {
    for (const f of this.fillers) rmSync(f, { force: true });
  }

  /** A network namespace of the soak's own for sandbox `name`: eth0 (a veth, its peer inside too). */
  makeNetns(name: string): string {
    const ns = this.netnsName(name);
    this.madeNetns.add(name);
    const ip = (...args: string[]) => execFileSync('ip', args, { timeout: 10_000 });
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
    ip('-n', ns, 'addr', 'add', '10.231.0.2/24', 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'peer0', 'up');
    return `/run/netns/${ns}`;
  }

  removeNetns(name: string): void {
    if (!this.madeNetns.delete(name)) return;
    try {
      execFileSync('ip', ['netns', 'del', this.netnsName(name)], {
        timeout: 10_000,
        stdio: 'ignore',
      });
    } catch {
      // never made
    }
  }

  netnsName(name: string): string {
    return `soak-${process.pid}-${name}`;
  }

  private get blockTemplate(): string {
    return path.join(this.base, 'block-template.ext4');
  }

  /** An ext4 image holding rootfs/ (busybox): each block container gets a copy of its own. */
  private makeBlockTemplate(): void {
    const tree = path.join(this.base, 'block-tree');
    makeBusyboxRootfs(path.join(tree, 'rootfs'), ['runs']);
    execFileSync('truncate', ['-s', '24M', this.blockTemplate], { timeout: 10_000 });
    execFileSync('mkfs.ext4', ['-q', '-F', '-d', tree, this.blockTemplate], { timeout: 60_000 });
    rmSync(tree, { recursive: true, force: true });
  }

  /** A fresh copy of the block rootfs for container `c` of sandbox `name` (sparse, fast). */
  makeBlockRootfs(name: string, c: string): string {
    const file = path.join(this.roots, 'blocks', `${name}-${c}.ext4`);
    execFileSync('cp', ['--sparse=always', this.blockTemplate, file], { timeout: 30_000 });
    return file;
  }

  removeBlockRootfs(name: string, c: string): void {
    rmSync(path.join(this.roots, 'blocks', `${name}-${c}.ext4`), { force: true });
  }

  /** Where sandbox `name`'s volume lives on the host (its containers count their runs there). */
  volumeDir(name: string): string {
    return path.join(this.roots, 'volumes', name);
  }

  async teardown(keepScratch: boolean): Promise<void> {
    this.closing = true;
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
    for (const name of [...this.madeNetns]) this.removeNetns(name);
    await step('stop the registry', async () => this.registry?.stop());
    await step('remove the CNI node namespace', async () => this.cni.teardown());
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
    if (this.holdsPlane) await step('release the plane', () => globalTeardown());
  }
}

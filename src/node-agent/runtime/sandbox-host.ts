// Every effect a sandbox's steps have on this node, behind one interface: the steps say what to
// do and in which order, this says how it is done (helper binary, mounts, QEMU, cgroups). The
// runtime's unit tests give a recording fake instead, and spawn nothing.
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { KataSandboxSpec } from '../../crds/index.js';
import type { Logger } from '../../observability/logger.js';
import type { NodeAgentConfig } from '../config.js';
import type { HostFs } from '../host-fs/types.js';
import type { AcceleratorChoice } from '../hypervisor/accelerator.js';
import type { GuestImagePaths } from '../hypervisor/guest-image.js';
import { QemuProcess, type QemuProcessInfo, type RunningVm } from '../hypervisor/qemu-process.js';

import type { ContainerImages } from '../images/container-images.js';
import { RootfsViews } from '../images/rootfs-view.js';
import type { PullSecretsRead, PullSecretsRequest } from '../images/pull-secrets.js';
import { NO_NETWORK, type NetworkStep } from '../network/network-step.js';
import { checkSandboxHostPaths, type CheckedSandboxPath } from '../storage/sandbox-host-paths.js';
import { prepareShareMounts, type ShareMountsRequest } from '../storage/share-mounts.js';
import { bindIntoShare, teardownShare } from '../storage/shared-dir.js';
import type { VmCgroups } from '../cgroups/vm-cgroups.js';
import { bootSandboxVm, type BootedVm } from '../hypervisor/sandbox-vm.js';
import { killOrphanQemu } from './orphan-qemu.js';
import { addNic, addTapBackend } from '../hypervisor/nic-hotplug.js';
import { NETNS_RUN_DIR } from '../network/cni.js';
import { runCommand, runOk } from '../network/exec.js';
import type { WarmPoolClaims } from '../warm-pool/warm-claims.js';
import { existsSync } from 'node:fs';
import type { BlockDrivePlan } from '../storage/block-drives.js';
import { qmpFdsArgs } from '../hypervisor/drive-hotplug.js';
import { execWithFdsArgv } from '../host-fs/argv.js';
import { runHostFs } from '../host-fs/run.js';
import { HostFsError } from '../host-fs/errors.js';

/** The whole hot-plug of a sandbox's drives (one QMP session). */
const DRIVE_HOTPLUG_TIMEOUT_MS = 20_000;

export type VmBootRequest = Parameters<typeof bootSandboxVm>[0];

export interface SandboxHost {
  readonly network: NetworkStep;
  /** The image cache; without it a container with `image` is refused (NotSupported). */
  readonly images?: ContainerImages | undefined;
  /** A sandbox's imagePullSecrets, from the controller's projection for it on this node. */
  readonly pullSecrets?: ((req: PullSecretsRequest) => Promise<PullSecretsRead>) | undefined;
  /** Where rootfs views live (image views are bound into the share from beneath it). */
  readonly viewsRoot: string;
  /** Opens every host path of the spec beneath a root admitting it (throws naming the field). */
  checkHostPaths(
    spec: KataSandboxSpec,
    signal: AbortSignal,
  ): Promise<ReadonlyMap<string, CheckedSandboxPath>>;
  makeDir(dir: string, mode: number): Promise<void>;
  removeTree(dir: string): Promise<void>;
  prepareShare(req: Omit<ShareMountsRequest, 'hostFs' | 'views'>): Promise<void>;
  /** Binds an image's view at <share>/<target>, walked without following symlinks. */
  bindView(shareDir: string, source: string, target: string, signal: AbortSignal): Promise<void>;
  teardownShare(shareDir: string, bindMounts: readonly string[], log: Logger): Promise<void>;
  releaseViews(uid: string): Promise<void>;
  guestImage(): GuestImagePaths;
  fileSize(file: string): Promise<number>;
  readText(file: string): Promise<string>;
  accelerator(requested: 'auto' | 'kvm' | 'tcg'): Promise<AcceleratorChoice>;
  /** The VM's cgroups, limited to `limitBytes`; [] when the node agent makes none. */
  createVmCgroups(uid: string, limitBytes: number): Promise<string[]>;
  removeVmCgroups(uid: string): Promise<void>;
  /** OOM kills in the VM's cgroups (undefined when unknown). */
  vmOomKills(uid: string): Promise<number | undefined>;
  /** Boots a VM and connects to its agent; on failure nothing is left running. */
  bootVm(req: VmBootRequest): Promise<BootedVm>;
  /** The QEMU a state file names, if that very process still runs. */
  adoptVm(info: QemuProcessInfo, log: Logger): RunningVm | undefined;
  killOrphanQemu(runDir: string, log: Logger): Promise<void>;
  /** A named network namespace (/run/netns/<name>): a warm VM's QEMU runs in its own. */
  addNetns(name: string): Promise<void>;
  /** Removes it; one already gone is fine. */
  removeNetns(name: string): Promise<void>;
  /** Hands tap `tap` to the running VM as backend net<index> (QEMU opens it in its namespace). */
  hotplugTap(qmpSocket: string, index: number, tap: string, signal: AbortSignal): Promise<void>;
  /** Adds virtio-net NIC nic<index> on backend net<index> to the running VM. */
  hotplugNic(qmpSocket: string, index: number, mac: string, signal: AbortSignal): Promise<void>;
  /** Adds the plan's drives to the running VM, each opened beneath its root by the helper. */
  hotplugDrives(qmpSocket: string, plan: BlockDrivePlan, signal: AbortSignal): Promise<void>;
  /** The node's warm pools, when it keeps any: a sandbox may take a VM from them. */
  readonly warmPools?: WarmPoolClaims | undefined;
}

export interface NodeSandboxHostOptions {
  config: NodeAgentConfig;
  guestImage: () => GuestImagePaths;
  accelerator: (requested: 'auto' | 'kvm' | 'tcg') => Promise<AcceleratorChoice>;
  network?: NetworkStep | undefined;
  images?: ContainerImages | undefined;
  pullSecrets?: ((req: PullSecretsRequest) => Promise<PullSecretsRead>) | undefined;
  views?: RootfsViews | undefined;
  vmCgroups?: VmCgroups | undefined;
  warmPools?: WarmPoolClaims | undefined;
  logger?: Logger;
}

/** The real host: kata-host-fs for paths and mounts, QEMU, cgroupfs. */
export function nodeSandboxHost(o: NodeSandboxHostOptions): SandboxHost {
  const hostFs: HostFs = { binary: o.config.hostFsBinary };
  const views = o.views ?? defaultViews(o.config, o.logger);
  return {
    network: o.network ?? NO_NETWORK,
    images: o.images,
    pullSecrets: o.pullSecrets,
    viewsRoot: views.root,
    checkHostPaths: (spec, signal) => checkSandboxHostPaths(hostFs, spec, o.config, signal),
    makeDir: async (dir, mode) => {
      await mkdir(dir, { recursive: true, mode });
    },
    removeTree: (dir) => rm(dir, { recursive: true, force: true }),
    prepareShare: async (req) => {
      await prepareShareMounts({ ...req, hostFs, views });
    },
    bindView: (shareDir, source, target, signal) =>
      bindIntoShare(
        hostFs,
        shareDir,
        { sourceRoot: views.root, source, target, readOnly: false },
        signal,
      ),
    teardownShare: (shareDir, bindMounts, log) => teardownShare(hostFs, shareDir, bindMounts, log),
    releaseViews: (uid) => views.teardown(uid),
    guestImage: o.guestImage,
    fileSize: async (file) => (await stat(file)).size,
    readText: (file) => readFile(file, 'utf8'),
    accelerator: o.accelerator,
    createVmCgroups: (uid, limit) => o.vmCgroups?.create(uid, limit) ?? Promise.resolve([]),
    removeVmCgroups: (uid) => o.vmCgroups?.remove(uid) ?? Promise.resolve(),
    vmOomKills: (uid) => o.vmCgroups?.oomKills(uid) ?? Promise.resolve(undefined),
    bootVm: bootSandboxVm,
    adoptVm: (info, log) => QemuProcess.adopt(info, log),
    killOrphanQemu,
    addNetns: async (name) => {
      await runOk(runCommand, ['ip', 'netns', 'add', name], { timeoutMs: 10_000 });
    },
    removeNetns: async (name) => {
      if (!existsSync(path.join(NETNS_RUN_DIR, name))) return;
      await runOk(runCommand, ['ip', 'netns', 'del', name], { timeoutMs: 10_000 });
    },
    hotplugTap: addTapBackend,
    hotplugNic: addNic,
    hotplugDrives: async (qmpSocket, plan, signal) => {
      const argv = execWithFdsArgv(hostFs, plan.opens, [
        hostFs.binary,
        ...qmpFdsArgs(qmpSocket, plan.drives, DRIVE_HOTPLUG_TIMEOUT_MS),
      ]);
      const out = await runHostFs(
        { ...hostFs, timeoutMs: DRIVE_HOTPLUG_TIMEOUT_MS + 5_000 },
        argv.slice(1),
        signal,
      );
      if (!out.ok) throw new HostFsError(out.failure.code, out.failure.message, out.failure.path);
    },
    warmPools: o.warmPools,
  };
}

/** The views root when the runtime is given none (hostPath rootfs need it without images). */
export function defaultViews(config: NodeAgentConfig, logger?: Logger): RootfsViews {
  return new RootfsViews({
    root: path.join(config.stateDir, 'rootfs-views'),
    lowerRoots: [],
    ...(logger && { logger }),
  });
}

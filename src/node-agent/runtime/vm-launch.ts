// Booting a VM for a sandbox or a warm pool alike: the refusals that need no host work (guest
// image, kernel, memory below what the image needs), then the accelerator, the VM's cgroups and
// QEMU booted until its agent answers. Failures are StepErrors with the reason status shows.
import type { VmSpec } from '../../crds/index.js';
import { vmMemoryMiB } from '../../crds/index.js';
import type { Logger } from '../../observability/logger.js';
import type { NodeAgentConfig } from '../config.js';
import { memoryShortfall } from '../hypervisor/guest-memory.js';
import { guestRootFor, type GuestImagePaths, type GuestRoot } from '../hypervisor/guest-image.js';
import type { DriveConfig, NicConfig } from '../hypervisor/qemu-args.js';
import { chooseLaunchStrategy, type LaunchOptions } from '../hypervisor/qemu-process.js';
import { sandboxVmConfig, vmFiles, type BootedVm } from '../hypervisor/sandbox-vm.js';
import { vmMemoryLimit } from '../hypervisor/vm-memory-limit.js';
import { hostTscKhz } from '../hypervisor/host-tsc.js';
import { machineFor, type VmRole } from '../hypervisor/machine-type.js';
import type { NodeAgentMetrics } from '../metrics/node-agent-metrics.js';
import { netnsLaunchPrefix } from '../network/tcfilter.js';
import type { QemuState } from '../state-store.js';
import type { SandboxHost } from './sandbox-host.js';
import { step, StepError } from './step-failure.js';

/** The guest image as one VM boots it: the kernel `spec.vm.kernel` names and that kernel's root. */
export type VmImage = GuestImagePaths & { root: GuestRoot };

/**
 * The guest image for this VM spec, its `kernel` the one `spec.vm.kernel` names, or the refusal
 * (KernelNotFound, MemoryTooSmall).
 */
export async function checkVmSpec(host: SandboxHost, vm: VmSpec | undefined): Promise<VmImage> {
  const image = await step('VMReady', 'GuestImageMissing', () =>
    Promise.resolve(host.guestImage()),
  );
  const kernelName = vm?.kernel ?? 'default';
  const kernel = Object.hasOwn(image.kernels, kernelName) ? image.kernels[kernelName] : undefined;
  if (kernel === undefined) {
    const names = Object.keys(image.kernels)
      .map((n) => JSON.stringify(n))
      .join(', ');
    throw new StepError({
      condition: 'VMReady',
      reason: 'KernelNotFound',
      message: `spec.vm.kernel: ${JSON.stringify(kernelName)} is not a kernel this node has (it has ${names})`,
    });
  }
  // Below what the image needs the guest dies half-booted (out of memory unpacking or running
  // its agent): refuse it with the reason instead, before any host work for the VM.
  const root = guestRootFor(image, kernelName);
  const need =
    'rootDisk' in root
      ? { rootDisk: true as const }
      : {
          initrdBytes: await step('VMReady', 'GuestImageMissing', () => host.fileSize(root.initrd)),
        };
  const shortfall = memoryShortfall(vmMemoryMiB({ vm }), need);
  if (shortfall) {
    throw new StepError({ condition: 'VMReady', reason: 'MemoryTooSmall', message: shortfall });
  }
  return { ...image, kernel, root };
}

export interface VmLaunch {
  /** What the VM's host objects are named by: the sandbox's uid, or a warm VM's own. */
  vmUid: string;
  /** A sandbox's own VM, or a warm-pool VM (which must take hot-plugged devices later). */
  role: VmRole;
  vm: VmSpec | undefined;
  image: VmImage;
  runDir: string;
  shareDir: string;
  nics?: readonly NicConfig[];
  drives?: readonly DriveConfig[];
  opens?: NonNullable<LaunchOptions['fds']>['opens'];
  /** QEMU runs inside this network namespace. */
  netnsPath?: string;
  /** A boot failure the caller can name better (a drive's field), else undefined. */
  explainBootFailure?: (err: unknown) => Error | undefined;
  signal: AbortSignal;
}

export interface VmLaunchDeps {
  host: SandboxHost;
  config: NodeAgentConfig;
  metrics: NodeAgentMetrics;
  log: Logger;
}

/** Boots the VM until its agent answers; what the state file records of it comes back too. */
export async function launchVm(
  deps: VmLaunchDeps,
  l: VmLaunch,
): Promise<{ booted: BootedVm; qemu: QemuState }> {
  const { host, config } = deps;
  const requested = l.vm?.accelerator ?? 'auto';
  const choice = await host.accelerator(
    requested === 'auto' ? config.defaultAccelerator : requested,
  );
  const files = vmFiles(l.runDir);
  const vmConfig = sandboxVmConfig({
    uid: l.vmUid,
    vm: l.vm,
    accelerator: choice.accelerator,
    kernel: l.image.kernel,
    root: l.image.root,
    runDir: l.runDir,
    shareDir: l.shareDir,
    nics: l.nics ?? [],
    drives: l.drives ?? [],
    tcgTranslationCacheMiB: config.tcgTranslationCacheMiB,
    machine: machineFor(config.machineType, l.role),
    tscKhz: hostTscKhz(),
  });
  const limit = vmMemoryLimit(
    vmMemoryMiB({ vm: l.vm }),
    config.vmMemoryOverheadMiB,
    choice.accelerator,
    config.tcgTranslationCacheMiB,
  );
  const limitBytes = limit.totalMiB * 1024 * 1024;
  const cgroups = await step('VMReady', 'VMCgroupFailed', () =>
    host.createVmCgroups(l.vmUid, limitBytes),
  );
  const startedAt = new Date().toISOString();
  const booted = await step('VMReady', 'BootFailed', () =>
    bootOnce({
      config: vmConfig,
      qemuLog: files.qemuLog,
      grpcSocket: files.grpcSocket,
      qemuBinary: config.qemuBinary,
      deadlineMs: config.bootTimeoutMs,
      ...(l.netnsPath && { launchPrefix: netnsLaunchPrefix(l.netnsPath) }),
      fds: { hostFs: { binary: config.hostFsBinary }, opens: l.opens ?? [], cgroups },
      strategy: chooseLaunchStrategy({
        systemdScopeEnabled: config.qemuLaunch === 'systemd-scope',
      }),
      unit: `kata-${l.vmUid}`,
      onCall: (rpc, code, s) =>
        deps.metrics.agentRpcSeconds.observe({ method: rpc, code: String(code) }, s),
      signal: l.signal,
      logger: deps.log,
    }),
  );
  async function bootOnce(req: Parameters<SandboxHost['bootVm']>[0]): Promise<BootedVm> {
    try {
      return await host.bootVm(req);
    } catch (err) {
      throw l.explainBootFailure?.(err) ?? err;
    }
  }
  deps.metrics.bootSeconds.observe({ accelerator: choice.accelerator }, booted.bootMillis / 1000);
  return {
    booted,
    qemu: {
      info: booted.qemu.info,
      accelerator: choice.accelerator,
      bootMillis: booted.bootMillis,
      startedAt,
      agentChannelSocket: files.agentChannelSocket,
      grpcSocket: files.grpcSocket,
    },
  };
}

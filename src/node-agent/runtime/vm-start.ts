// The VM of one sandbox: refusals first (guest image, kernel, memory below what the image needs),
// then the accelerator, the host network, the VM's cgroups, and QEMU booted until its agent
// answers. Recorded in the state file so a restarted node agent adopts the same QEMU.
import { vmMemoryMiB } from '../../crds/index.js';
import { memoryShortfall } from '../hypervisor/guest-memory.js';
import { chooseLaunchStrategy } from '../hypervisor/qemu-process.js';
import { netnsLaunchPrefix } from '../network/tcfilter.js';
import { sandboxVmConfig, vmFiles } from '../vm-launch.js';
import { driveOpenFailure } from './block-drive-plan.js';
import { prepareNetwork } from './network-steps.js';
import type { SandboxContext } from './sandbox-context.js';
import { step, StepError } from './step-failure.js';

export async function startVm(
  ctx: SandboxContext,
  runDir: string,
  shareDir: string,
  signal: AbortSignal,
): Promise<void> {
  const { host, spec, config } = ctx;
  const image = await step('VMReady', 'GuestImageMissing', () =>
    Promise.resolve(host.guestImage()),
  );
  const kernelName = spec.vm?.kernel ?? 'default';
  if (kernelName !== 'default') {
    throw new StepError({
      condition: 'VMReady',
      reason: 'KernelNotFound',
      message: `spec.vm.kernel: ${JSON.stringify(kernelName)} is not a kernel this node has (only "default")`,
    });
  }
  // Below what the image needs the guest dies half-booted (out of memory unpacking or running
  // its agent): refuse it with the reason instead, before any host work for the VM.
  const shortfall = memoryShortfall(
    vmMemoryMiB(spec),
    await step('VMReady', 'GuestImageMissing', () => host.fileSize(image.initrd)),
  );
  if (shortfall) {
    throw new StepError({ condition: 'VMReady', reason: 'MemoryTooSmall', message: shortfall });
  }
  const requested = spec.vm?.accelerator ?? 'auto';
  const choice = await host.accelerator(
    requested === 'auto' ? config.defaultAccelerator : requested,
  );
  const network = await prepareNetwork(ctx, runDir, signal);
  const files = vmFiles(runDir);
  const vmConfig = sandboxVmConfig({
    uid: ctx.uid,
    vm: spec.vm,
    accelerator: choice.accelerator,
    kernel: image.kernel,
    initrd: image.initrd,
    runDir,
    shareDir,
    nics: network.nics,
    drives: ctx.blockPlan?.drives ?? [],
  });
  // The guest's memory plus QEMU's own.
  const limitBytes = (vmMemoryMiB(spec) + config.vmMemoryOverheadMiB) * 1024 * 1024;
  const cgroups = await step('VMReady', 'VMCgroupFailed', () =>
    host.createVmCgroups(ctx.uid, limitBytes),
  );
  const startedAt = new Date().toISOString();
  const booted = await step('VMReady', 'BootFailed', async () => {
    try {
      return await host.bootVm({
        config: vmConfig,
        qemuLog: files.qemuLog,
        grpcSocket: files.grpcSocket,
        qemuBinary: config.qemuBinary,
        deadlineMs: config.bootTimeoutMs,
        ...(network.netnsPath && { launchPrefix: netnsLaunchPrefix(network.netnsPath) }),
        fds: {
          hostFs: { binary: config.hostFsBinary },
          opens: ctx.blockPlan?.opens ?? [],
          cgroups,
        },
        strategy: chooseLaunchStrategy({
          systemdScopeEnabled: config.qemuLaunch === 'systemd-scope',
        }),
        unit: `kata-${ctx.uid}`,
        onCall: (rpc, code, s) =>
          ctx.metrics.agentRpcSeconds.observe({ method: rpc, code: String(code) }, s),
        signal,
        logger: ctx.log,
      });
    } catch (err) {
      // A drive the helper could not open beneath its root fails naming its field.
      throw driveOpenFailure(err, ctx.blockPlan) ?? err;
    }
  });
  ctx.vm = booted.qemu;
  ctx.agent = booted.agent;
  ctx.state.qemu = {
    info: booted.qemu.info,
    accelerator: choice.accelerator,
    bootMillis: booted.bootMillis,
    startedAt,
    agentChannelSocket: files.agentChannelSocket,
    grpcSocket: files.grpcSocket,
  };
  ctx.state.agentReady = true;
  await ctx.save();
  ctx.metrics.bootSeconds.observe({ accelerator: choice.accelerator }, booted.bootMillis / 1000);
  ctx.log.info(
    { pid: booted.qemu.pid, bootMillis: booted.bootMillis, accelerator: choice.accelerator },
    'VM booted',
  );
}

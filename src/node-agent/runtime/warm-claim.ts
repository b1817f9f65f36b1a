// Taking a warm VM instead of booting one: a sandbox whose VM shape a pool of the node keeps, and
// that needs nothing a running VM cannot be given, takes a ready one (its run dir, share, netns
// and cgroup stay named by the VM's own uid, recorded in the state file); its share is filled
// after the fact (bind mounts into the exported directory), its block drives and network are
// plugged in live (only on a machine type that can hot-plug: machine-type.ts).
// Otherwise it boots cold, and status.vm.warmMiss says why when a pool could have served it.
import { NETNS_RUN_DIR } from '../network/cni.js';
import path from 'node:path';
import { warmIneligibility, shapeOf } from '../../crds/warm-shape.js';
import { hotplugIneligibility, machineFor } from '../hypervisor/machine-type.js';
import { prepareNetwork } from './network-steps.js';
import type { SandboxContext } from './sandbox-context.js';
import { step } from './step-failure.js';
import { HostFsError, hostPathReasonOf } from '../host-fs/errors.js';
import { HostPathError } from '../storage/host-paths.js';

/** True when the sandbox now runs on a warm VM (its state file says so). */
export async function claimWarmVm(ctx: SandboxContext): Promise<boolean> {
  const pools = ctx.host.warmPools;
  if (!pools) return false;
  const shape = shapeOf(ctx.spec.vm);
  if (!pools.keeps(shape)) return false;
  const t0 = performance.now();
  const nics = (ctx.spec.network?.mode ?? 'none') === 'none' ? 0 : 1;
  const devices = (ctx.blockPlan?.drives.length ?? 0) + nics;
  // A microvm node whose TCG VMs fell back to pc still refuses here: a cold boot, never a failed claim.
  const noHotplug = hotplugIneligibility(machineFor(ctx.config.machineType, 'warm'), devices);
  const ineligible = noHotplug ?? warmIneligibility(devices);
  const got = ineligible ? { miss: ineligible } : pools.take(shape);
  if ('miss' in got) {
    if (ineligible) {
      ctx.metrics.warm.misses.inc({ reason: noHotplug ? 'NoHotplug' : 'TooManyDevices' });
    }
    ctx.state.warmMiss = got.miss;
    return false;
  }
  const { record, vm, agent } = got.taken;
  ctx.vm = vm;
  ctx.agent = agent;
  Object.assign(ctx.state, {
    runDir: record.runDir,
    shareDir: record.shareDir,
    qemu: record.qemu,
    agentReady: true,
    warm: {
      vmUid: record.vmUid,
      pool: record.pool,
      netnsName: record.netnsName,
      claimMillis: Math.round(performance.now() - t0),
    },
  });
  await ctx.save();
  await pools.handedOver(record.vmUid);
  ctx.log.info({ vmUid: record.vmUid, pool: record.pool, pid: vm.pid }, 'took a warm VM');
  return true;
}

/** The sandbox's network plugged into its running warm VM: taps moved in, then NICs added. */
export async function attachWarmNetwork(ctx: SandboxContext, signal: AbortSignal): Promise<void> {
  const warm = ctx.state.warm;
  const qemu = ctx.state.qemu;
  if (!warm || !qemu || ctx.state.network || !ctx.state.runDir) return;
  const qmpSocket = qemu.info.qmpSocket;
  const t0 = performance.now();
  const plan = await prepareNetwork(ctx, ctx.state.runDir, signal, {
    qemuNetnsPath: path.join(NETNS_RUN_DIR, warm.netnsName),
    plug: (tap, n) => ctx.host.hotplugTap(qmpSocket, n, tap, signal),
  });
  for (const [n, nic] of plan.nics.entries()) {
    await ctx.host.hotplugNic(qmpSocket, n, nic.mac, signal);
  }
  warm.claimMillis += Math.round(performance.now() - t0);
  await ctx.save();
}

/** The sandbox's block drives plugged into its running warm VM (once; recorded). */
export async function plugWarmDrives(ctx: SandboxContext, signal: AbortSignal): Promise<void> {
  const warm = ctx.state.warm;
  const plan = ctx.blockPlan;
  if (!warm || warm.drivesPlugged || !ctx.state.qemu || !plan || plan.drives.length === 0) return;
  const t0 = performance.now();
  const qmpSocket = ctx.state.qemu.info.qmpSocket;
  await step('VMReady', 'BlockHotplugFailed', async () => {
    try {
      await ctx.host.hotplugDrives(qmpSocket, plan, signal);
    } catch (err) {
      // A drive whose path no longer opens beneath its root fails naming its field.
      const drive =
        err instanceof HostFsError && plan.planned.find((p) => p.drive.path === err.path);
      if (!drive || !(err instanceof HostFsError)) throw err;
      throw new HostPathError(
        hostPathReasonOf(err.code) ?? 'HostPathNotAllowed',
        drive.field,
        `${err.message} (when its drive was plugged into the VM; nothing was attached)`,
      );
    }
  });
  warm.drivesPlugged = true;
  warm.claimMillis += Math.round(performance.now() - t0);
  await ctx.save();
}

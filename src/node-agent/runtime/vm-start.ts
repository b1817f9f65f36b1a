// The VM of one sandbox, booted cold: refusals first (guest image, kernel, memory below what the
// image needs), then the host network, and the VM booted until its agent answers (vm-launch.ts).
// Recorded in the state file so a restarted node agent adopts the same QEMU.
import { driveOpenFailure } from './block-drive-plan.js';
import { prepareNetwork } from './network-steps.js';
import type { SandboxContext } from './sandbox-context.js';
import { checkVmSpec, launchVm } from './vm-launch.js';

export async function startVm(
  ctx: SandboxContext,
  runDir: string,
  shareDir: string,
  signal: AbortSignal,
): Promise<void> {
  const { host, spec } = ctx;
  const image = await checkVmSpec(host, spec.vm);
  const network = await prepareNetwork(ctx, runDir, signal);
  const { booted, qemu } = await launchVm(ctx, {
    vmUid: ctx.uid,
    role: 'sandbox',
    vm: spec.vm,
    image,
    runDir,
    shareDir,
    nics: network.nics,
    drives: ctx.blockPlan?.drives ?? [],
    opens: ctx.blockPlan?.opens ?? [],
    ...(network.netnsPath && { netnsPath: network.netnsPath }),
    // A drive the helper could not open beneath its root fails naming its field.
    explainBootFailure: (err) => driveOpenFailure(err, ctx.blockPlan),
    signal,
  });
  ctx.vm = booted.qemu;
  ctx.agent = booted.agent;
  ctx.state.qemu = qemu;
  ctx.state.agentReady = true;
  await ctx.save();
  ctx.log.info(
    { pid: booted.qemu.pid, bootMillis: booted.bootMillis, accelerator: qemu.accelerator },
    'VM booted',
  );
}

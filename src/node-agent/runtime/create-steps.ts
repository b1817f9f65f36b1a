// The create steps of one sandbox, in order, each idempotent and recorded in its state file:
// refusals that need no host work → host paths opened → a warm VM taken, if one fits → run dir →
// share and its bind mounts → image pulls (in the background, alongside the boot) → the VM and its
// agent (booted, or the warm VM's network plugged in) → the guest's network → CreateSandbox; then
// each container in spec order once its image is ready.
import { sharedDirStorage } from '../../agent/storage.js';
import { invalidImage } from '../images/container-images.js';
import { sandboxDns } from '../network/guest-dns.js';
import { sandboxDirs } from './sandbox-dirs.js';
import { unsupportedFeature } from './spec-support.js';
import { blockDrivePlan } from './block-drive-plan.js';
import type { ContainerSupervisor } from './container-supervisor.js';
import { startImagePulls } from './image-steps.js';
import { configureGuestNetwork } from './network-steps.js';
import type { SandboxContext } from './sandbox-context.js';
import { alreadyDone, step, StepError } from './step-failure.js';
import { startVm } from './vm-start.js';
import { attachWarmNetwork, claimWarmVm, plugWarmDrives } from './warm-claim.js';
import { shapeOf } from '../../crds/warm-shape.js';

export interface CreateHooks {
  /** The VM runs and its agent answers: watch for its exit from now on. */
  vmStarted(): void;
}

/** Everything up to CreateSandbox; resumes where a previous node agent stopped. */
export async function createSandbox(ctx: SandboxContext, hooks: CreateHooks): Promise<void> {
  const signal = ctx.createAbort.signal;
  const { host, spec } = ctx;
  const refused = unsupportedFeature(spec, { images: host.images !== undefined });
  if (refused) throw new StepError(refused);
  const badImage = invalidImage(spec, host.images?.allowedRegistries);
  if (badImage) {
    throw new StepError({
      condition: 'ContainersReady',
      reason: badImage.reason,
      message: badImage.message,
    });
  }
  // Nothing touches the host before every host path was opened beneath a root admitting it.
  const checked = await host.checkHostPaths(spec, signal);
  host.network.validate(spec);
  ctx.blockPlan = await step('ContainersReady', 'InvalidBlockDevice', () =>
    Promise.resolve(blockDrivePlan(spec, checked)),
  );
  signal.throwIfAborted();

  // A warm VM of the sandbox's shape, if the node keeps one ready: no boot below.
  if (!ctx.state.runDir && !ctx.vm && (await claimWarmVm(ctx))) {
    hooks.vmStarted();
    ctx.changed();
  }
  const dirs = sandboxDirs(ctx.config.runDir, ctx.uid);
  const runDir = ctx.state.runDir ?? dirs.runDir;
  const shareDir = ctx.state.shareDir ?? dirs.shareDir;
  ctx.state.runDir = runDir;
  await ctx.save();
  await host.makeDir(runDir, 0o700);

  await step('VMReady', 'SharedDirFailed', async () => {
    await host.makeDir(shareDir, 0o755);
    ctx.state.shareDir = shareDir;
    await ctx.save();
    await host.prepareShare({
      uid: ctx.uid,
      spec,
      checked,
      shareDir,
      // Recorded before it is made: a crash in between still finds it at teardown.
      record: async (target) => {
        if (ctx.state.bindMounts.includes(target)) return;
        ctx.state.bindMounts.push(target);
        await ctx.save();
      },
      signal,
    });
  });
  ctx.changed();
  startImagePulls(ctx, shareDir, signal);

  if (!ctx.vm) {
    // Warm VMs give way: a cold boot never overcommits the node.
    await host.warmPools?.makeRoom(shapeOf(spec.vm));
    await startVm(ctx, runDir, shareDir, signal);
    hooks.vmStarted();
    ctx.changed();
  } else if (ctx.state.warm) {
    await plugWarmDrives(ctx, signal);
    await attachWarmNetwork(ctx, signal);
  }

  const client = ctx.client();
  if (!ctx.state.sandboxCreated) {
    await configureGuestNetwork(ctx, signal);
    await step('AgentConnected', 'CreateSandboxFailed', async () => {
      const setup = {
        sandboxId: ctx.uid,
        hostname: spec.hostname ?? ctx.state.name.slice(0, 63),
        dns: await sandboxDns(spec.dns),
        storages: [sharedDirStorage()],
      };
      await client.createSandbox(setup, { signal }).catch((err) => {
        if (!alreadyDone(err)) throw err;
      });
    });
    ctx.state.sandboxCreated = true;
    await ctx.save();
  }
}

/** Each container in spec order, once its image (if any) is ready. */
export async function startContainers(
  ctx: SandboxContext,
  containers: Pick<ContainerSupervisor, 'resume' | 'checkAllDone'>,
): Promise<void> {
  const signal = ctx.createAbort.signal;
  for (const c of ctx.spec.containers) {
    signal.throwIfAborted();
    const image = ctx.images.get(c.name);
    if (image) await step('ContainersReady', 'ImagePrepareFailed', () => image);
    await containers.resume(c.name, signal);
  }
  ctx.changed();
  containers.checkAllDone();
}

// The two ways out of a sandbox. Release (it ended): the VM, its network, mounts, views and run
// dir go, the state file (with the end) stays. Destroy (deletion): the containers are stopped
// gracefully first, and after the release the logs and the state file go too. Each step is best
// effort and reported: a failed one never keeps the ones after it from running.
import { sandboxLogDir } from './container-log.js';
import type { ContainerSupervisor } from './container-supervisor.js';
import type { SandboxContext } from './sandbox-context.js';

/** Stops the VM and removes what the sandbox has on the host but its state file. */
export async function releaseSandbox(ctx: SandboxContext, task?: Promise<void>): Promise<void> {
  const { host, state } = ctx;
  ctx.stopping = true;
  ctx.createAbort.abort();
  ctx.watchAbort.abort();
  await task?.catch(() => {});
  // A pull still running would lease an image or mount a view after the release below.
  await Promise.allSettled(ctx.images.values());
  if (ctx.agent && ctx.vm?.running) {
    await ctx.agent.client.destroySandbox().catch(() => {});
  }
  await stopVm(ctx);
  await ctx.agent?.close().catch(() => {});
  ctx.agent = undefined;
  await host.removeVmCgroups(ctx.vmUid);
  // A warm VM's QEMU ran in a namespace of its own.
  if (state.warm) {
    await host.removeNetns(state.warm.netnsName).catch((err: unknown) => {
      reportFailure(ctx, err, 'removing the VM network namespace failed', 'NetworkReleaseFailed');
    });
  }
  // A network whose release failed (a CNI DEL that failed still holds its address and port)
  // stays recorded, and the release fails after the other steps: the next one tries it again.
  let networkFailure: { err: unknown } | undefined;
  await host.network.release(state.network ?? {}).catch((err: unknown) => {
    networkFailure = { err };
    reportFailure(ctx, err, 'releasing the network failed', 'NetworkReleaseFailed');
  });
  if (state.shareDir) await host.teardownShare(state.shareDir, state.bindMounts, ctx.log);
  // After the share: the views are bound there, and QEMU (gone now) served them.
  await host.releaseViews(ctx.uid).catch((err: unknown) => {
    reportFailure(ctx, err, 'releasing the rootfs views failed', 'RootfsViewReleaseFailed');
  });
  await host.images?.release(ctx.uid).catch((err: unknown) => {
    reportFailure(ctx, err, 'releasing the image views failed', 'ImageReleaseFailed');
  });
  delete state.images;
  if (state.runDir) await host.removeTree(state.runDir);
  Object.assign(state, { bindMounts: [], agentReady: false });
  delete state.shareDir;
  if (!networkFailure) delete state.network;
  delete state.guestNetwork;
  if (ctx.persisted) await ctx.save();
  if (networkFailure) throw networkFailure.err;
}

/** The VM this runtime runs, else the one its state file names, else any QEMU of its run dir. */
async function stopVm(ctx: SandboxContext): Promise<void> {
  const saved = ctx.state.qemu;
  const q = ctx.vm ?? (saved && ctx.host.adoptVm(saved.info, ctx.log));
  if (q) {
    const outcome = await q.stop({ powerdownGraceMs: 0, quitGraceMs: 3_000, qmpTimeoutMs: 2_000 });
    ctx.log.info({ pid: q.pid, outcome }, 'VM stopped');
  } else if (ctx.state.runDir) {
    await ctx.host.killOrphanQemu(ctx.state.runDir, ctx.log);
  }
  ctx.vm = undefined;
}

/**
 * Deletion: SIGTERM to every container, up to the grace period, SIGKILL, RemoveContainer,
 * DestroySandbox; then the release, the logs and the state file.
 */
export async function destroySandbox(
  ctx: SandboxContext,
  containers: Pick<ContainerSupervisor, 'stopAll'>,
  task: Promise<void> | undefined,
  release: () => Promise<void>,
): Promise<void> {
  ctx.stopping = true;
  ctx.createAbort.abort();
  await task?.catch(() => {});
  try {
    await containers.stopAll();
    if (ctx.agent && ctx.vm?.running) {
      await ctx.agent.client.destroySandbox().catch(() => {});
    }
  } catch (err) {
    ctx.log.warn({ err }, 'stopping containers failed');
  }
  await release();
  await ctx.host.removeTree(sandboxLogDir(ctx.config.logDir, ctx.state));
  await ctx.removeState();
  ctx.log.info('sandbox removed from the host');
}

function reportFailure(ctx: SandboxContext, err: unknown, what: string, reason: string): void {
  ctx.log.error({ err }, what);
  ctx.event('Warning', reason, (err as Error).message.slice(0, 1000));
}

// Why a sandbox's VM ended: the kernel's OOM killer in its cgroup, or QEMU's exit status, with the
// console's last lines; and a step cut off by that end fails for the VM's reason, not the step's.
import { vmMemoryMiB } from '../../crds/index.js';
import type { ExitStatus } from '../hypervisor/qemu-process.js';
import type { SandboxContext } from './sandbox-context.js';
import type { RunningVm } from '../hypervisor/qemu-process.js';
import type { StepFailure } from './sandbox-status.js';
import { describeVmMemoryLimit, vmMemoryLimit } from '../hypervisor/vm-memory-limit.js';
import { VM_END_REASONS } from './step-failure.js';

/** A step cut off because the VM died (an agent RPC failing as QEMU goes) fails for the VM's reason. */
export async function causeOf(ctx: SandboxContext, failure: StepFailure): Promise<StepFailure> {
  const q = ctx.vm;
  if (!q || q.running || VM_END_REASONS.has(failure.reason)) return failure;
  const status = await Promise.race([
    q.exited,
    new Promise<undefined>((r) => setTimeout(() => r(undefined), 2_000).unref()),
  ]);
  return status ? vmExitFailure(ctx, q, status) : failure;
}

/** The VM's end as a failure; every container not yet ended ends with that reason. */
export async function vmExitFailure(
  ctx: SandboxContext,
  q: RunningVm,
  status: ExitStatus,
): Promise<StepFailure> {
  const how = status.signal
    ? `signal ${status.signal}`
    : status.code !== null
      ? `code ${status.code}`
      : 'unknown status';
  const failure = await vmExitCause(ctx, q, how);
  for (const st of Object.values(ctx.state.containers)) {
    if (st.state !== 'Exited') Object.assign(st, { state: 'Exited', reason: failure.reason });
  }
  return failure;
}

async function vmExitCause(ctx: SandboxContext, q: RunningVm, how: string): Promise<StepFailure> {
  const tail = await q.consoleTail(20).catch(() => [] as string[]);
  const consoleText = `console (last ${tail.length} lines):\n${tail.join('\n')}`;
  const oomKills = await ctx.host.vmOomKills(ctx.vmUid).catch(() => undefined);
  if (oomKills) {
    const limit = vmMemoryLimit(
      vmMemoryMiB(ctx.spec),
      ctx.config.vmMemoryOverheadMiB,
      ctx.state.qemu?.accelerator ?? 'tcg',
      ctx.config.tcgTranslationCacheMiB,
    );
    return {
      condition: 'VMReady',
      reason: 'VMOutOfMemory',
      message: `QEMU (pid ${q.pid}) was killed by the kernel's OOM killer (${how}): its cgroup's limit is ${describeVmMemoryLimit(limit)}; ${consoleText}`,
    };
  }
  return {
    condition: 'VMReady',
    reason: 'VMExited',
    message: `QEMU (pid ${q.pid}) exited unexpectedly (${how}); ${consoleText}`,
  };
}

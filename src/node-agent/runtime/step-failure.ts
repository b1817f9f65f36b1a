// How a create step's failure becomes the sandbox's condition, reason and message: each error a
// step can meet maps to one, anything else to the step's own.
import { AgentRpcError } from '../../agent/errors.js';
import { BootError } from '../hypervisor/boot.js';
import { GuestImageMissingError } from '../hypervisor/guest-image.js';
import { HostPathError } from '../storage/host-paths.js';
import { RootfsViewError } from '../images/rootfs-view.js';
import { NetworkSetupError } from '../network/sandbox-network.js';
import type { StepFailure } from './sandbox-status.js';

/** Failures that are the VM's end itself. */
export const VM_END_REASONS = new Set(['VMExited', 'VMOutOfMemory']);

/** A step's failure, with the condition it fails. */
export class StepError extends Error {
  constructor(readonly failure: StepFailure) {
    super(failure.message);
  }
}

export function classify(
  err: unknown,
  step: StepFailure['condition'],
  reason: string,
): StepFailure {
  if (err instanceof StepError) return err.failure;
  if (err instanceof HostPathError) {
    const condition = err.reason === 'InvalidBlockDevice' ? 'ContainersReady' : 'VMReady';
    return { condition, reason: err.reason, message: err.message };
  }
  if (err instanceof BootError)
    return { condition: 'VMReady', reason: 'BootFailed', message: err.message };
  if (err instanceof GuestImageMissingError) {
    return { condition: 'VMReady', reason: 'GuestImageMissing', message: err.message };
  }
  if (err instanceof NetworkSetupError) {
    return { condition: 'NetworkReady', reason: err.reason, message: err.message };
  }
  if (err instanceof RootfsViewError) {
    return { condition: 'ContainersReady', reason: err.reason, message: err.message };
  }
  return { condition: step, reason, message: (err as Error)?.message ?? String(err) };
}

export async function step<T>(
  condition: StepFailure['condition'],
  reason: string,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new StepError(classify(err, condition, reason));
  }
}

/** ALREADY_EXISTS / "already started" from a call a previous node agent made before crashing. */
export function alreadyDone(err: unknown): boolean {
  return (
    err instanceof AgentRpcError &&
    (err.code === 6 /* ALREADY_EXISTS */ || /already (started|exists)/.test(err.details))
  );
}

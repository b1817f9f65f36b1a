// How a create step's failure becomes the sandbox's condition, reason and message: an error that
// knows them (its condition and reason fields) says so itself, anything else takes the step's.
import { AgentRpcError } from '../../agent/errors.js';
import type { StepCondition } from '../../crds/index.js';
import type { StepFailure } from './sandbox-status.js';

/** Failures that are the VM's end itself. */
export const VM_END_REASONS = new Set(['VMExited', 'VMOutOfMemory']);

/** A step's failure, with the condition it fails. */
export class StepError extends Error {
  constructor(readonly failure: StepFailure) {
    super(failure.message);
  }
}

/** An error that says which condition it fails and why (HostPathError, BootError, …). */
interface ClassifiedError extends Error {
  readonly condition: StepCondition;
  readonly reason: string;
}

function isClassified(err: unknown): err is ClassifiedError {
  const e = err as Partial<ClassifiedError> | undefined;
  return err instanceof Error && typeof e?.condition === 'string' && typeof e.reason === 'string';
}

/** The failure status shows for what a step met: the error's own condition and reason, else the step's. */
export function classify(err: unknown, step: StepCondition, reason: string): StepFailure {
  if (err instanceof StepError) return err.failure;
  if (isClassified(err))
    return { condition: err.condition, reason: err.reason, message: err.message };
  return { condition: step, reason, message: (err as Error)?.message ?? String(err) };
}

export async function step<T>(
  condition: StepCondition,
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

// Runs the hand-built Kata 1.x client (test/peers/kata1-client) and reads what it prints: one JSON
// line per step, with the step's gRPC code and its message or result. A run that fails still
// gives what it printed, so a test can name the step that went wrong. Not a test file itself.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** One line of the client's output. */
export interface Kata1Step {
  step: string;
  code: number;
  message?: string;
  result?: Record<string, unknown>;
}

export interface Kata1Run {
  steps: Kata1Step[];
  stdout: string;
  stderr: string;
}

export async function runKata1Client(
  bin: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<Kata1Run> {
  const run = await promisify(execFile)(bin, [...args], {
    timeout: timeoutMs,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  }).catch((err: { stdout?: string; stderr?: string }) => ({
    stdout: err.stdout ?? '',
    stderr: err.stderr ?? String(err),
  }));
  const steps = run.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Kata1Step);
  return { steps, stdout: run.stdout, stderr: run.stderr };
}

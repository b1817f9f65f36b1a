// The network modules run host commands through a Runner (src/common/run-command.ts underneath),
// so unit tests can record argv instead of touching the machine.
import { CommandError, runCommand as runArgv } from '../../common/run-command.js';

export interface RunOptions {
  timeoutMs: number;
  /** Written to stdin, then stdin is closed. */
  input?: string;
  env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Resolves with the exit status (a non-zero exit is not a rejection); rejects on spawn failure. */
export type Runner = (cmd: string, args: readonly string[], opts: RunOptions) => Promise<RunResult>;

export { CommandError };

const MAX_OUTPUT = 4 * 1024 * 1024;

export const runCommand: Runner = async (cmd, args, opts) => {
  const r = await runArgv([cmd, ...args], {
    timeoutMs: opts.timeoutMs,
    ...(opts.input !== undefined && { input: opts.input }),
    ...(opts.env && { env: opts.env }),
    maxStdoutBytes: MAX_OUTPUT,
    maxStderrBytes: MAX_OUTPUT,
  });
  const stderr = r.timedOut ? `${r.stderr}\n(timed out after ${opts.timeoutMs} ms)` : r.stderr;
  return { code: r.code, signal: r.signal, stdout: r.stdout.toString('utf8'), stderr };
};

/** Runs and throws CommandError unless the command exits 0; returns stdout. */
export async function runOk(
  run: Runner,
  argv: readonly string[],
  opts: RunOptions,
): Promise<string> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('empty argv');
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new CommandError({ argv, ...r });
  return r.stdout;
}

/** argv prefix that runs a command inside the network namespace at nsPath. */
export function inNetns(nsPath: string | undefined, argv: readonly string[]): string[] {
  return nsPath === undefined ? [...argv] : ['nsenter', `--net=${nsPath}`, '--', ...argv];
}

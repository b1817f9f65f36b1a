// Runs a host command from an argv array (never a shell) with a timeout; the network modules take
// a Runner so unit tests can record argv instead of touching the machine.
import { spawn } from 'node:child_process';

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

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: RunResult,
  ) {
    const why =
      result.signal !== null ? `killed by ${result.signal}` : `exited with code ${result.code}`;
    const detail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-5).join('; ');
    super(`${argv.join(' ')}: ${why}${detail ? `: ${detail}` : ''}`);
    this.name = 'CommandError';
  }
}

const MAX_OUTPUT = 4 * 1024 * 1024;

export const runCommand: Runner = (cmd, args, opts) =>
  new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      timeout: opts.timeoutMs,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < MAX_OUTPUT) stderr += d;
    });
    child.once('error', reject);
    child.stdin.on('error', () => {}); // a command that exits without reading stdin
    child.stdin.end(opts.input ?? '');
    child.once('close', (code, signal) => {
      if (signal === 'SIGKILL' && code === null)
        stderr += `\n(timed out after ${opts.timeoutMs} ms)`;
      resolve({ code, signal, stdout, stderr });
    });
  });

/** Runs and throws CommandError unless the command exits 0; returns stdout. */
export async function runOk(
  run: Runner,
  argv: readonly string[],
  opts: RunOptions,
): Promise<string> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('empty argv');
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new CommandError(argv, r);
  return r.stdout;
}

/** argv prefix that runs a command inside the network namespace at nsPath. */
export function inNetns(nsPath: string | undefined, argv: readonly string[]): string[] {
  return nsPath === undefined ? [...argv] : ['nsenter', `--net=${nsPath}`, '--', ...argv];
}

// Runs a program from an argv array (never a shell) with a deadline and cancellation, its output
// captured up to a cap: the one command runner the node agent's modules and the guest agent share,
// and one error type for a command that did not exit 0.
import { spawn } from 'node:child_process';

export interface CommandOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Written to stdin, then stdin is closed; without it stdin is /dev/null. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Cap of each captured stream (default 16 MiB of stdout, 256 KiB of stderr). */
  maxStdoutBytes?: number;
  maxStderrBytes?: number;
}

export interface CommandResult {
  argv: readonly string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  /** Killed (SIGKILL) at the deadline. */
  timedOut: boolean;
  /** Killed (SIGKILL) because the signal aborted. */
  aborted: boolean;
}

/** What a failed command's error says about it: only the fields a message needs. */
export type CommandOutcome = Pick<CommandResult, 'argv' | 'code' | 'signal' | 'stderr'> & {
  stdout: Buffer | string;
  timedOut?: boolean;
  aborted?: boolean;
  timeoutMs?: number;
};

export class CommandError extends Error {
  readonly argv: readonly string[];
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly aborted: boolean;

  constructor(outcome: CommandOutcome) {
    const why = outcome.aborted
      ? 'cancelled'
      : outcome.timedOut
        ? `timed out${outcome.timeoutMs !== undefined ? ` after ${outcome.timeoutMs} ms` : ''}`
        : outcome.signal !== null
          ? `killed by ${outcome.signal}`
          : `exited with code ${outcome.code}`;
    const text = outcome.stderr.trim() || outcome.stdout.toString().trim();
    const detail = text.split('\n').slice(-5).join('; ');
    super(`${outcome.argv.join(' ')}: ${why}${detail ? `: ${detail}` : ''}`);
    this.name = 'CommandError';
    this.argv = outcome.argv;
    this.code = outcome.code;
    this.signal = outcome.signal;
    this.stderr = outcome.stderr;
    this.timedOut = outcome.timedOut ?? false;
    this.aborted = outcome.aborted ?? false;
  }
}

/**
 * Resolves with how the command ended, whatever its exit status; rejects only when it cannot be
 * started (ENOENT, EACCES). A command cancelled before it starts resolves as aborted.
 */
export function runCommand(argv: readonly string[], opts: CommandOptions): Promise<CommandResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new Error('empty argv'));
  const maxOut = opts.maxStdoutBytes ?? 16 * 1024 * 1024;
  const maxErr = opts.maxStderrBytes ?? 256 * 1024;
  return new Promise((resolve, reject) => {
    const ended = (
      code: number | null,
      signal: NodeJS.Signals | null,
      stdout: Buffer,
      stderr: string,
    ) => resolve({ argv, code, signal, stdout, stderr, timedOut, aborted });
    let timedOut = false;
    let aborted = false;
    if (opts.signal?.aborted) {
      aborted = true;
      ended(null, null, Buffer.alloc(0), '');
      return;
    }
    // Its own process group, so a deadline kills what it started too (a shell's children would
    // otherwise keep its output pipes open, and the command would seem to run on).
    const child = spawn(cmd, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      detached: true,
    });
    const kill = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      kill();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const out: Buffer[] = [];
    let outLen = 0;
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      if (outLen < maxOut) out.push(d);
      outLen += d.length;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < maxErr) stderr += d;
    });
    if (child.stdin) {
      child.stdin.on('error', () => {}); // a command that exits without reading stdin
      child.stdin.end(opts.input);
    }
    const done = (): void => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    child.once('error', (err) => {
      done();
      reject(err);
    });
    child.once('close', (code, signal) => {
      done();
      ended(code, signal, Buffer.concat(out), stderr);
    });
  });
}

/** runCommandOk's shape: what a module takes so its unit tests can record argv instead. */
export type CommandRunner = (
  argv: readonly string[],
  opts: CommandOptions,
) => Promise<CommandResult>;

/** Runs and throws CommandError unless the command exits 0 (in time, not cancelled). */
export async function runCommandOk(
  argv: readonly string[],
  opts: CommandOptions,
): Promise<CommandResult> {
  const r = await runCommand(argv, opts);
  if (r.code !== 0 || r.timedOut || r.aborted) {
    throw new CommandError({ ...r, timeoutMs: opts.timeoutMs });
  }
  return r;
}

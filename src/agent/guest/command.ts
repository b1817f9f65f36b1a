import { execFile } from 'node:child_process';

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs a program (argv, never a shell); injected so tests can record argv instead. */
export type CommandRunner = (
  file: string,
  args: readonly string[],
  opts?: { timeoutMs?: number },
) => Promise<CommandResult>;

export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    cause: string,
  ) {
    super(`${argv.join(' ')}: ${cause}${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
    this.name = 'CommandError';
  }
}

/** execFile with a deadline (SIGKILL when it passes) and the command's stderr in the error. */
export const runCommand: CommandRunner = (file, args, opts = {}) =>
  new Promise((resolve, reject) => {
    const timeout = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    execFile(
      file,
      [...args],
      { timeout, killSignal: 'SIGKILL', maxBuffer: 16 << 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ stdout, stderr });
          return;
        }
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
        const cause = e.killed
          ? `timed out after ${timeout} ms`
          : typeof e.code === 'number'
            ? `exited with status ${e.code}`
            : e.message;
        reject(
          new CommandError(
            [file, ...args],
            typeof e.code === 'number' ? e.code : null,
            String(stderr),
            cause,
          ),
        );
      },
    );
  });

// Runs one of the image tools from an argv array with a timeout and an AbortSignal; output is
// captured (capped) and a non-zero exit is a ToolError carrying stderr.
import { spawn } from 'node:child_process';

export interface ToolResult {
  stdout: Buffer;
  stderr: string;
}

export class ToolError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly code: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderr: string,
    readonly timedOut: boolean,
    readonly aborted: boolean,
  ) {
    const why = aborted
      ? 'cancelled'
      : timedOut
        ? 'timed out'
        : signal !== null
          ? `killed by ${signal}`
          : `exited with code ${code}`;
    super(
      `${argv[0] ?? '?'} ${argv[1] ?? ''}: ${why}: ${stderr.trim().split('\n').slice(-3).join('; ')}`,
    );
    this.name = 'ToolError';
  }
}

const MAX_STDOUT = 16 * 1024 * 1024;
const MAX_STDERR = 256 * 1024;

export interface RunToolOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

export function runTool(
  bin: string,
  args: readonly string[],
  opts: RunToolOptions,
): Promise<ToolResult> {
  const argv = [bin, ...args];
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new ToolError(argv, null, null, '', false, true));
      return;
    }
    const child = spawn(bin, [...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    let timedOut = false;
    let aborted = false;
    const kill = (): void => {
      child.kill('SIGKILL');
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
    child.stdout.on('data', (d: Buffer) => {
      if (outLen < MAX_STDOUT) out.push(d);
      outLen += d.length;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < MAX_STDERR) stderr += d;
    });
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
      if (code === 0 && !timedOut && !aborted) {
        resolve({ stdout: Buffer.concat(out), stderr });
      } else {
        reject(new ToolError(argv, code, signal, stderr, timedOut, aborted));
      }
    });
  });
}

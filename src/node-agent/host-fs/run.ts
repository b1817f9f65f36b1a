// Runs the helper once through the one command runner: argv only, a timeout, cancellation; its
// JSON result or its JSON error.
import { runCommand } from '../../common/run-command.js';
import { HostFsError, parseHostFsError, type HostFsFailure } from './errors.js';
import { DEFAULT_HOST_FS_TIMEOUT_MS, type HostFs } from './types.js';

export type HostFsOutcome = { ok: true; result: unknown } | { ok: false; failure: HostFsFailure };

const MAX_OUTPUT = 1024 * 1024;

/**
 * Resolves with the parsed stdout on exit 0, or the helper's own error when it reports one.
 * Rejects (HostFsError) when the helper cannot run, times out or says nothing parseable, and with
 * the signal's reason when cancelled.
 */
export async function runHostFs(
  fs: HostFs,
  args: readonly string[],
  signal?: AbortSignal,
): Promise<HostFsOutcome> {
  const timeout = fs.timeoutMs ?? DEFAULT_HOST_FS_TIMEOUT_MS;
  const what = `${fs.binary} ${args[0] ?? ''}`;
  const r = await runCommand([fs.binary, ...args], {
    timeoutMs: timeout,
    maxStdoutBytes: MAX_OUTPUT,
    maxStderrBytes: MAX_OUTPUT,
    ...(signal && { signal }),
  }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'EACCES') {
      throw new HostFsError(
        'EIO',
        `${what}: cannot run the helper (${err.code}); see --host-fs-binary`,
      );
    }
    throw new HostFsError('EIO', `${what}: ${err.message}`);
  });
  if (r.aborted) throw signal?.reason ?? new Error(`${what}: cancelled`);
  if (r.timedOut) throw new HostFsError('ETIMEDOUT', `${what}: timed out after ${timeout} ms`);
  const stdout = r.stdout.toString('utf8');
  if (r.code === 0) {
    try {
      return { ok: true, result: JSON.parse(stdout) as unknown };
    } catch {
      throw new HostFsError(
        'EIO',
        `${what}: unreadable output ${JSON.stringify(stdout.slice(0, 200))}`,
      );
    }
  }
  const failure = parseHostFsError(r.stderr);
  if (failure) return { ok: false, failure };
  const how = r.signal ? `killed by ${r.signal}` : `exited with code ${r.code}`;
  throw new HostFsError('EIO', `${what}: ${how}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ''}`);
}

// Runs the helper once: argv only, a timeout, cancellation; its JSON result or its JSON error.
import { execFile } from 'node:child_process';
import { HostFsError, parseHostFsError, type HostFsFailure } from './errors.js';
import { DEFAULT_HOST_FS_TIMEOUT_MS, type HostFs } from './types.js';

export type HostFsOutcome = { ok: true; result: unknown } | { ok: false; failure: HostFsFailure };

const MAX_OUTPUT = 1024 * 1024;

/**
 * Resolves with the parsed stdout on exit 0, or the helper's own error when it reports one.
 * Rejects (HostFsError) when the helper cannot run, times out or says nothing parseable, and with
 * the signal's reason when cancelled.
 */
export function runHostFs(
  fs: HostFs,
  args: readonly string[],
  signal?: AbortSignal,
): Promise<HostFsOutcome> {
  const timeout = fs.timeoutMs ?? DEFAULT_HOST_FS_TIMEOUT_MS;
  const what = `${fs.binary} ${args[0] ?? ''}`;
  return new Promise((resolve, reject) => {
    execFile(
      fs.binary,
      [...args],
      {
        timeout,
        killSignal: 'SIGKILL',
        maxBuffer: MAX_OUTPUT,
        encoding: 'utf8',
        ...(signal && { signal }),
      },
      (err, stdout, stderr) => {
        if (!err) {
          try {
            resolve({ ok: true, result: JSON.parse(stdout) as unknown });
          } catch {
            reject(
              new HostFsError(
                'EIO',
                `${what}: unreadable output ${JSON.stringify(stdout.slice(0, 200))}`,
              ),
            );
          }
          return;
        }
        if (signal?.aborted) {
          reject(signal.reason ?? err);
          return;
        }
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
        if (e.code === 'ENOENT' || e.code === 'EACCES') {
          reject(
            new HostFsError(
              'EIO',
              `${what}: cannot run the helper (${e.code}); see --host-fs-binary`,
            ),
          );
          return;
        }
        if (e.killed) {
          reject(new HostFsError('ETIMEDOUT', `${what}: timed out after ${timeout} ms`));
          return;
        }
        const failure = parseHostFsError(stderr);
        if (failure) resolve({ ok: false, failure });
        else reject(new HostFsError('EIO', `${what}: ${err.message.trim()}`));
      },
    );
  });
}

// Ending a process through its shutdown: on SIGTERM or SIGINT (once), or when the process itself
// decides to stop. A shutdown that fails still ends the process, with the failure logged.
import type { Logger } from '../observability/logger.js';

export interface ProcessShutdown {
  /** Runs the shutdown, which exits with `code`; exits 1 if the shutdown itself fails. */
  exit(code: number): void;
}

export function processShutdown(
  shutdown: (code: number) => Promise<void>,
  log: Pick<Logger, 'fatal'>,
): ProcessShutdown {
  const exit = (code: number): void => {
    shutdown(code).catch((err: unknown) => {
      log.fatal({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.once('SIGTERM', () => exit(0));
  process.once('SIGINT', () => exit(0));
  return { exit };
}

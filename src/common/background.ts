// Work started and not awaited: its failure is logged, never left as an unhandled rejection
// (which would end the process: one sandbox's full disk must not take the node agent down).
import type { Logger } from '../observability/logger.js';

export function inBackground(
  what: string,
  work: Promise<unknown>,
  log: Pick<Logger, 'error'>,
): void {
  work.catch((err: unknown) => log.error({ err }, `${what} failed`));
}

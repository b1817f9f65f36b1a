import { pino, type Logger, type LoggerOptions } from 'pino';
import { currentReconcile } from './reconcile-context.js';

export type { Logger };

/**
 * The project's log line shape: one key per field (`component` names the program, children add
 * other keys, never a second `component` or `name`), levels as names ("level":"warn").
 */
export function logOptions(component: string, level: string): LoggerOptions {
  return {
    level,
    base: { component },
    formatters: { level: (label) => ({ level: label }) },
    // reconcileID and key on every line written within a reconcile (reconcile-context.ts)
    mixin: () => currentReconcile() ?? {},
  };
}

/** JSON logs to stdout; LOG_LEVEL picks the level (default info, silent under Jest unless set). */
export function createLogger(component: string, level = process.env.LOG_LEVEL): Logger {
  const fallback = process.env.JEST_WORKER_ID ? 'silent' : 'info';
  return pino(logOptions(component, level ?? fallback));
}

/** The fields every sandbox-scoped log line carries. */
export function sandboxFields(meta: {
  namespace?: string;
  name?: string;
  uid?: string;
}): Record<string, string | undefined> {
  return { namespace: meta.namespace, name: meta.name, uid: meta.uid };
}

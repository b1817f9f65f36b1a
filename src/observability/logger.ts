import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs to stdout; LOG_LEVEL picks the level (default info, silent under Jest unless set). */
export function createLogger(component: string, level = process.env.LOG_LEVEL): Logger {
  const fallback = process.env.JEST_WORKER_ID ? 'silent' : 'info';
  return pino({ name: component, level: level ?? fallback, base: { component } });
}

/** The fields every sandbox-scoped log line carries. */
export function sandboxFields(meta: {
  namespace?: string;
  name?: string;
  uid?: string;
}): Record<string, string | undefined> {
  return { namespace: meta.namespace, name: meta.name, uid: meta.uid };
}

// The options of `log`, as Pods' log (PodLogOptions): parsed from a query string with an error
// naming the bad parameter. Pure; kata-api validates with it, the node agent again.
export interface LogOptions {
  container?: string;
  follow: boolean;
  previous: boolean;
  tailLines?: number;
  limitBytes?: number;
  timestamps: boolean;
  /** At most one of sinceSeconds and sinceTime (RFC 3339), as Pods. */
  sinceSeconds?: number;
  sinceTime?: string;
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/** The earliest time (ms since the epoch) a line may have, if the options set one. Pure. */
export function sinceMs(o: LogOptions, nowMs: number): number | undefined {
  if (o.sinceSeconds !== undefined) return nowMs - o.sinceSeconds * 1000;
  if (o.sinceTime !== undefined) return Date.parse(o.sinceTime);
  return undefined;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function bool(q: URLSearchParams, key: string): boolean | string {
  const v = q.get(key);
  if (v === null || v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  return `${key}: ${JSON.stringify(v)} is not a boolean`;
}

function positive(q: URLSearchParams, key: string, min: number): number | undefined | string {
  const v = q.get(key);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(n) || n < min) {
    return `${key}: ${JSON.stringify(v)} must be an integer >= ${min}`;
  }
  return n;
}

export function parseLogOptions(q: URLSearchParams): Parsed<LogOptions> {
  const follow = bool(q, 'follow');
  const previous = bool(q, 'previous');
  const timestamps = bool(q, 'timestamps');
  const tailLines = positive(q, 'tailLines', 0);
  const limitBytes = positive(q, 'limitBytes', 1);
  for (const v of [follow, previous, timestamps, tailLines, limitBytes]) {
    if (typeof v === 'string') return { ok: false, message: v };
  }
  const sinceSeconds = positive(q, 'sinceSeconds', 1);
  if (typeof sinceSeconds === 'string') return { ok: false, message: sinceSeconds };
  const sinceTime = q.get('sinceTime') || undefined;
  if (
    sinceTime !== undefined &&
    (!RFC3339.test(sinceTime) || !Number.isFinite(Date.parse(sinceTime)))
  ) {
    return {
      ok: false,
      message: `sinceTime: ${JSON.stringify(sinceTime)} is not an RFC 3339 time`,
    };
  }
  if (sinceSeconds !== undefined && sinceTime !== undefined) {
    return { ok: false, message: 'sinceSeconds, sinceTime: at most one of them may be set' };
  }
  const container = q.get('container') ?? undefined;
  if (container !== undefined && (container.length > 63 || !DNS_LABEL.test(container))) {
    return {
      ok: false,
      message: `container: ${JSON.stringify(container)} is not a container name`,
    };
  }
  return {
    ok: true,
    value: {
      ...(container && { container }),
      follow: follow === true,
      previous: previous === true,
      timestamps: timestamps === true,
      ...(typeof tailLines === 'number' && { tailLines }),
      ...(typeof limitBytes === 'number' && { limitBytes }),
      ...(sinceSeconds !== undefined && { sinceSeconds }),
      ...(sinceTime !== undefined && { sinceTime }),
    },
  };
}

/** The query string that carries `o` (to the node agent). Pure. */
export function logOptionsQuery(o: LogOptions): string {
  const q = new URLSearchParams();
  if (o.container) q.set('container', o.container);
  if (o.follow) q.set('follow', 'true');
  if (o.previous) q.set('previous', 'true');
  if (o.tailLines !== undefined) q.set('tailLines', String(o.tailLines));
  if (o.limitBytes !== undefined) q.set('limitBytes', String(o.limitBytes));
  if (o.timestamps) q.set('timestamps', 'true');
  if (o.sinceSeconds !== undefined) q.set('sinceSeconds', String(o.sinceSeconds));
  if (o.sinceTime !== undefined) q.set('sinceTime', o.sinceTime);
  return q.toString();
}

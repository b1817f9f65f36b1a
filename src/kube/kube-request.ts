// Raw HTTP to the API server with the KubeConfig's credentials: used where the generated clients
// cannot do the job (a cancellable watch stream; a list of an arbitrary resource path).
import type { KubeConfig } from '@kubernetes/client-node';
import http from 'node:http';
import https from 'node:https';
import { createInterface } from 'node:readline';
import { KubeApiError, toKubeError } from './kube-client.js';

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  method?: string;
  query?: Query;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  /** Whole-request deadline (default 60 s); 0 = none (watch streams rely on their own watchdog). */
  timeoutMs?: number;
}

export function buildUrl(server: string, path: string, query: Query = {}): URL {
  const url = new URL(server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
  }
  return url;
}

interface OpenResponse {
  res: http.IncomingMessage;
  /**
   * Ends the request: a response read to its end leaves the connection to the identity's
   * keep-alive pool (shared-agent.ts); anything else closes it.
   */
  close: () => void;
}

async function open(kc: KubeConfig, path: string, opts: RequestOptions): Promise<OpenResponse> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = buildUrl(cluster.server, path, opts.query);
  const reqOpts: https.RequestOptions = { method: opts.method ?? 'GET', headers: {} };
  await kc.applyToHTTPSOptions(reqOpts);
  opts.signal?.throwIfAborted();
  const headers = (reqOpts.headers ?? {}) as http.OutgoingHttpHeaders;
  headers.Accept = 'application/json';
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  if (payload !== undefined) headers['Content-Type'] = opts.contentType ?? 'application/json';
  const mod = url.protocol === 'http:' ? http : https;
  return new Promise<OpenResponse>((resolve, reject) => {
    const req = mod.request(url, { ...reqOpts, headers, signal: opts.signal });
    let res: http.IncomingMessage | undefined;
    const close = (): void => {
      if (!res?.complete) req.destroy();
    };
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== 0) {
      const ms = opts.timeoutMs ?? 60_000;
      timer = setTimeout(
        () => req.destroy(new Error(`${opts.method ?? 'GET'} ${path}: timed out after ${ms} ms`)),
        ms,
      );
      req.once('close', () => clearTimeout(timer));
    }
    req.once('error', (err) => {
      close();
      reject(err);
    });
    req.once('response', (r) => {
      res = r;
      resolve({ res: r, close });
    });
    req.end(payload);
  });
}

async function readBody(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function errorFromResponse(code: number, text: string, what: string): KubeApiError {
  let body: unknown = text;
  let message = text.slice(0, 500) || http.STATUS_CODES[code] || 'error';
  let reason: string | undefined;
  try {
    body = JSON.parse(text);
    const s = body as { message?: string; reason?: string };
    message = s.message ?? message;
    reason = s.reason;
  } catch {
    // not JSON: keep the raw text
  }
  return new KubeApiError(code, `${what}: ${message} (HTTP ${code})`, reason, body);
}

/** One JSON request; non-2xx becomes a KubeApiError carrying the server's Status message. */
export async function requestJson<T = unknown>(
  kc: KubeConfig,
  path: string,
  opts: RequestOptions = {},
): Promise<T> {
  const what = `${opts.method ?? 'GET'} ${path}`;
  let conn: OpenResponse | undefined;
  try {
    conn = await open(kc, path, opts);
    const text = await readBody(conn.res);
    const code = conn.res.statusCode ?? 0;
    if (code < 200 || code >= 300) throw errorFromResponse(code, text, what);
    return (text ? JSON.parse(text) : undefined) as T;
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    throw toKubeError(err, err instanceof KubeApiError ? undefined : what);
  } finally {
    conn?.close();
  }
}

export interface RawWatchEvent {
  type: string;
  object: unknown;
}

/**
 * Stream a watch: each line is handed to onEvent. Resolves when the server ends the stream,
 * rejects on a transport error or a non-200 answer; aborting the signal closes the connection.
 */
export async function streamWatch(
  kc: KubeConfig,
  path: string,
  query: Query,
  onEvent: (ev: RawWatchEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const what = `WATCH ${path}`;
  const conn = await open(kc, path, {
    query: { ...query, watch: true },
    signal,
    timeoutMs: 0,
  }).catch((err: unknown) => {
    throw signal.aborted ? signal.reason : toKubeError(err, what);
  });
  try {
    const code = conn.res.statusCode ?? 0;
    if (code !== 200) throw errorFromResponse(code, await readBody(conn.res), what);
    const lines = createInterface({ input: conn.res, crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line.trim()) continue;
      let ev: RawWatchEvent;
      try {
        ev = JSON.parse(line) as RawWatchEvent;
      } catch {
        throw new Error(`${what}: undecodable watch line`);
      }
      onEvent(ev);
    }
    // A connection cut mid-stream surfaces as an "aborted" response rather than an error.
    if (conn.res.errored) throw conn.res.errored;
    if (!conn.res.complete) throw new Error(`${what}: connection closed mid-stream`);
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw err;
  } finally {
    conn.close();
  }
}

import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  KubeConfig,
} from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { newKubeConfig } from './shared-agent.js';

/** Where the in-cluster service account token lives; its presence means "running in a Pod". */
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface KubeConfigSource {
  /** An explicit kubeconfig path (a --kubeconfig flag); wins over everything. */
  path?: string;
  /** Environment to read KUBECONFIG from; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Overridable for tests: whether the in-cluster token exists. */
  inCluster?: boolean;
}

/**
 * For a privileged node component: in-cluster when running in a Pod (KUBERNETES_SERVICE_HOST
 * set), else only the explicit path. Never KUBECONFIG or ~/.kube/config, which on a node may be
 * an administrator's credentials the component would silently act with.
 */
export function loadKubeConfigStrict(path: string | undefined, env = process.env): KubeConfig {
  const kc = newKubeConfig();
  if (path) {
    kc.loadFromFile(path);
  } else if (env.KUBERNETES_SERVICE_HOST) {
    kc.loadFromCluster();
  } else {
    throw new Error(
      '--kubeconfig: required outside a Pod (KUBERNETES_SERVICE_HOST is unset); ' +
        'the node agent does not fall back to KUBECONFIG or ~/.kube/config',
    );
  }
  if (!kc.getCurrentCluster()) throw new Error('kubeconfig has no current cluster');
  return kc;
}

/** Explicit path, else KUBECONFIG, else in-cluster, else ~/.kube/config (client-node's default). */
export function loadKubeConfig(source: KubeConfigSource = {}): KubeConfig {
  const kc = newKubeConfig();
  const env = source.env ?? process.env;
  const path = source.path ?? env.KUBECONFIG;
  if (path) {
    kc.loadFromFile(path);
  } else if (source.inCluster ?? existsSync(SERVICE_ACCOUNT_TOKEN)) {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (!kc.getCurrentCluster()) throw new Error('kubeconfig has no current cluster');
  return kc;
}

export interface KubeClients {
  kc: KubeConfig;
  custom: CustomObjectsApi;
  coordination: CoordinationV1Api;
  core: CoreV1Api;
  events: EventsV1Api;
}

export function makeClients(kc: KubeConfig): KubeClients {
  return {
    kc,
    custom: kc.makeApiClient(CustomObjectsApi),
    coordination: kc.makeApiClient(CoordinationV1Api),
    core: kc.makeApiClient(CoreV1Api),
    events: kc.makeApiClient(EventsV1Api),
  };
}

/** A failed API call, with the server's Status message and reason pulled out of the raw body. */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  constructor(
    readonly code: number,
    message: string,
    readonly reason: string | undefined,
    readonly body: unknown,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface StatusBody {
  message?: string;
  reason?: string;
}

function parseStatusBody(body: unknown): { parsed: unknown; status: StatusBody } {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return { parsed: body, status: { message: body.slice(0, 500) || undefined } };
    }
  }
  const status =
    parsed && typeof parsed === 'object' ? (parsed as StatusBody) : ({} satisfies StatusBody);
  return { parsed, status };
}

/** The HTTP status code of an API error (client-node's ApiException, ours, or a raw fetch/watch error). */
export function statusCode(err: unknown): number | undefined {
  if (err instanceof KubeApiError || err instanceof ApiException) return err.code;
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; statusCode?: unknown };
    if (typeof e.statusCode === 'number') return e.statusCode;
    if (typeof e.code === 'number') return e.code;
  }
  return undefined;
}

/** Turn anything thrown by an API call into a KubeApiError with a readable message; other errors pass through. */
export function toKubeError(err: unknown, context?: string): Error {
  if (err instanceof KubeApiError) return err;
  const prefix = context ? `${context}: ` : '';
  if (err instanceof ApiException) {
    const { parsed, status } = parseStatusBody(err.body);
    const msg = status.message ?? `HTTP ${err.code}`;
    return new KubeApiError(err.code, `${prefix}${msg} (HTTP ${err.code})`, status.reason, parsed, {
      cause: err,
    });
  }
  if (err instanceof Error) {
    return context ? new Error(`${prefix}${err.message}`, { cause: err }) : err;
  }
  return new Error(`${prefix}${String(err)}`);
}

export const isNotFound = (err: unknown): boolean => statusCode(err) === 404;
export const isConflict = (err: unknown): boolean => statusCode(err) === 409;
export const isGone = (err: unknown): boolean => statusCode(err) === 410;
export const isInvalid = (err: unknown): boolean => statusCode(err) === 422;
/**
 * A JSON patch whose `test` op failed: the API server answers 422 Invalid with no field causes,
 * where a real validation failure names its fields (details.causes).
 */
export function isFailedPatchTest(err: unknown): boolean {
  if (!isInvalid(err)) return false;
  const body = (toKubeError(err) as KubeApiError).body as
    { details?: { causes?: unknown[] } } | undefined;
  return (body?.details?.causes ?? []).length === 0;
}
export const isAlreadyExists = (err: unknown): boolean =>
  statusCode(err) === 409 && (toKubeError(err) as KubeApiError).reason === 'AlreadyExists';

export interface CallOptions {
  signal?: AbortSignal;
  /** Default 30 s: the generated clients have no timeout of their own. */
  timeoutMs?: number;
}

export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/**
 * Run one API call with a deadline and cancellation, errors converted by toKubeError.
 * The generated clients take no AbortSignal, so the request itself may outlive a timeout;
 * the caller is released either way.
 */
export async function callApi<T>(
  what: string,
  fn: () => Promise<T>,
  opts: CallOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  opts.signal?.throwIfAborted();
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    onAbort = () => reject(opts.signal?.reason ?? new Error(`${what}: aborted`));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([fn(), guard]);
  } catch (err) {
    if (opts.signal?.aborted && err === opts.signal.reason) throw err;
    throw toKubeError(err, what);
  } finally {
    clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
  }
}

// One request to kata-api: the front proxy's certificate and headers say who calls, a
// SubjectAccessReview says whether they may, then the sandbox's node agent serves it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { ResourceAttributes } from '../kube/access-reviews.js';
import type { AccessReviewResult, UserInfo } from '../observability/metrics-auth.js';
import type { Logger } from '../observability/logger.js';
import type { KataSandbox } from '../crds/index.js';
import {
  SUBRESOURCE_GROUP,
  SUBRESOURCE_VERB,
  nodeStreamPath,
  type Subresource,
} from '../subresources/contract.js';
import { logOptionsQuery, parseLogOptions } from '../subresources/log-options.js';
import type { Duplex } from 'node:stream';
import { writeStatus, type StatusDetails } from './api-status.js';
import { proxyUpgrade, refuseUpgrade } from './stream-proxy.js';
import {
  STREAM_PROTOCOL_V5,
  consoleOptionsQuery,
  parseConsoleOptions,
  parseStreamOptions,
  streamOptionsQuery,
} from '../subresources/stream-protocol.js';
import { apiResourceList } from './discovery.js';
import {
  proxyCertificateProblem,
  userFromHeaders,
  type RequestHeaderConfig,
} from './front-proxy.js';
import { NodeStreams, StreamError } from './node-streams.js';
import { parseApiPath } from './request-path.js';

export interface ApiHandlerDeps {
  requestHeader: () => RequestHeaderConfig;
  review: (user: UserInfo, attrs: ResourceAttributes) => Promise<AccessReviewResult>;
  streams: NodeStreams;
  logger: Logger;
}

/** kube-apiserver's wording for a refused request, so users see what RBAC lacks. Pure. */
export function forbiddenMessage(
  user: string,
  verb: string,
  sub: Subresource,
  namespace: string,
  name: string,
): string {
  return (
    `katasandboxes.${SUBRESOURCE_GROUP} "${name}" is forbidden: User "${user}" cannot ${verb} ` +
    `resource "katasandboxes/${sub}" in API group "${SUBRESOURCE_GROUP}" in the namespace "${namespace}"`
  );
}

/** Which container: the one named, or the only one. Pure. */
export function chooseContainer(
  names: string[],
  requested: string | undefined,
  sandbox: string,
): { ok: true; name: string } | { ok: false; message: string } {
  if (requested) {
    return names.includes(requested)
      ? { ok: true, name: requested }
      : { ok: false, message: `container ${requested} is not valid for katasandbox ${sandbox}` };
  }
  if (names.length === 1 && names[0]) return { ok: true, name: names[0] };
  return {
    ok: false,
    message: `a container name must be specified for katasandbox ${sandbox}, choose one of: [${names.join(' ')}]`,
  };
}

type Authorized =
  | { ok: true; namespace: string; name: string; subresource: Subresource }
  | { ok: false; code: number; message: string; details?: StatusDetails; body?: object };

/** Who calls (the front proxy's word, checked) and whether they may (a SubjectAccessReview). */
async function authorize(
  deps: ApiHandlerDeps,
  req: IncomingMessage,
  url: URL,
): Promise<Authorized> {
  const cfg = deps.requestHeader();
  const socket = req.socket as TLSSocket;
  const cn = socket.getPeerCertificate()?.subject?.CN;
  const problem = proxyCertificateProblem(
    { authorized: socket.authorized, ...(typeof cn === 'string' && { commonName: cn }) },
    cfg,
  );
  if (problem) {
    deps.logger.warn({ why: problem, remote: socket.remoteAddress }, 'request refused');
    return { ok: false, code: 401, message: `Unauthorized: ${problem}` };
  }
  const path = parseApiPath(url.pathname);
  if (path.kind === 'discovery')
    return { ok: false, code: 200, message: '', body: apiResourceList() };
  if (path.kind === 'unknown') {
    return { ok: false, code: 404, message: 'the server could not find the requested resource' };
  }
  const user = userFromHeaders(req.headers, cfg);
  if (!user)
    return { ok: false, code: 401, message: 'Unauthorized: the front proxy named no user' };
  const { namespace, name, subresource } = path;
  const verb = SUBRESOURCE_VERB[subresource];
  const review = await deps.review(user, {
    namespace,
    verb,
    group: SUBRESOURCE_GROUP,
    resource: 'katasandboxes',
    subresource,
    name,
  });
  if (!review.allowed) {
    deps.logger.info({ user: user.username, namespace, name, subresource }, 'forbidden');
    return {
      ok: false,
      code: 403,
      message: forbiddenMessage(user.username, verb, subresource, namespace, name),
      details: { name, kind: `katasandboxes/${subresource}` },
    };
  }
  return { ok: true, namespace, name, subresource };
}

const isHealth = (url: URL): boolean => url.pathname === '/healthz' || url.pathname === '/readyz';

export function apiHandler(deps: ApiHandlerDeps) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://kata-api');
    if (isHealth(url)) {
      res.writeHead(200).end('ok\n');
      return;
    }
    const a = await authorize(deps, req, url);
    if (!a.ok) {
      if (a.body) {
        res.writeHead(a.code, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(a.body));
        return;
      }
      return writeStatus(res, a.code, a.message, a.details);
    }
    const { namespace, name, subresource } = a;
    if (subresource === 'exec' || subresource === 'attach') {
      return writeStatus(
        res,
        400,
        `${subresource} is a stream: upgrade to a WebSocket with subprotocol ${STREAM_PROTOCOL_V5}`,
      );
    }
    if (req.method !== 'GET') return writeStatus(res, 405, `${subresource} is read with GET`);
    await serveRead(deps, url.searchParams, { namespace, name, subresource }, res);
  };
}

/** exec, attach (and console's input) as WebSocket upgrades, carried to the node agent. */
export function upgradeHandler(deps: ApiHandlerDeps) {
  return async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'https://kata-api');
    const a = await authorize(deps, req, url);
    if (!a.ok) return refuseUpgrade(socket, a.code === 200 ? 400 : a.code, a.message, a.details);
    const { name, subresource } = a;
    const client = { req, socket, head };
    if (subresource === 'log') return refuseUpgrade(socket, 400, 'log is read with a GET');
    if (subresource === 'console') {
      const o = parseConsoleOptions(url.searchParams);
      if (!o.ok) return refuseUpgrade(socket, 400, o.message);
      return carry(deps, a, consoleOptionsQuery(o.value), client);
    }
    const parsed = parseStreamOptions(url.searchParams, subresource);
    if (!parsed.ok) return refuseUpgrade(socket, 400, parsed.message);
    return carry(deps, a, '', client, (sb) => {
      const container = chooseContainer(
        (sb.spec?.containers ?? []).map((c) => c.name),
        parsed.value.container,
        name,
      );
      if (!container.ok) return { ok: false, message: container.message };
      return {
        ok: true,
        query: streamOptionsQuery({ ...parsed.value, container: container.name }),
      };
    });
  };
}

type QueryFor = (sb: KataSandbox) => { ok: true; query: string } | { ok: false; message: string };

/** The authorized upgrade, carried to the node agent of the sandbox's node. */
async function carry(
  deps: ApiHandlerDeps,
  target: { namespace: string; name: string; subresource: Subresource },
  query: string,
  client: { req: IncomingMessage; socket: Duplex; head: Buffer },
  queryFor?: QueryFor,
): Promise<void> {
  const { namespace, name, subresource } = target;
  try {
    const sb = await deps.streams.sandbox(namespace, name);
    let q = query;
    if (queryFor) {
      const r = queryFor(sb);
      if (!r.ok) return refuseUpgrade(client.socket, 400, r.message);
      q = r.query;
    }
    const node = NodeStreams.nodeOf(sb);
    if (!node) return refuseUpgrade(client.socket, 400, `katasandbox ${name} is not on a node yet`);
    const endpoint = await deps.streams.endpoint(node);
    deps.logger.info({ namespace, name, subresource }, 'stream opened');
    await proxyUpgrade({
      endpoint,
      pathAndQuery: `${nodeStreamPath(namespace, name, subresource)}?${q}`,
      token: await deps.streams.token(),
      client,
      onClose: () => deps.logger.info({ namespace, name, subresource }, 'stream closed'),
    });
  } catch (err) {
    if (err instanceof StreamError) return refuseUpgrade(client.socket, err.code, err.message);
    deps.logger.warn({ err, namespace, name, subresource }, 'stream failed');
    const message = `${subresource} failed: ${String((err as Error).message ?? err)}`;
    return refuseUpgrade(client.socket, 500, message);
  }
}

/** `log` or `console`: a GET the node agent answers with a stream of text. */
async function serveRead(
  deps: ApiHandlerDeps,
  q: URLSearchParams,
  target: { namespace: string; name: string; subresource: 'log' | 'console' },
  res: ServerResponse,
): Promise<void> {
  const { namespace, name, subresource } = target;
  const parsed = parseLogOptions(q);
  if (!parsed.ok) return writeStatus(res, 400, parsed.message);
  if (subresource === 'console' && (parsed.value.container || parsed.value.previous)) {
    return writeStatus(res, 400, 'console takes no container and no previous');
  }
  const v = parsed.value;
  if (subresource === 'console' && (v.timestamps || v.sinceSeconds || v.sinceTime)) {
    return writeStatus(res, 400, 'console takes no timestamps, sinceSeconds or sinceTime');
  }
  try {
    const sb = await deps.streams.sandbox(namespace, name);
    let options = parsed.value;
    if (subresource === 'log') {
      const container = chooseContainer(
        (sb.spec?.containers ?? []).map((c) => c.name),
        parsed.value.container,
        name,
      );
      if (!container.ok) return writeStatus(res, 400, container.message);
      options = { ...options, container: container.name };
    }
    const node = NodeStreams.nodeOf(sb);
    if (!node) return writeStatus(res, 400, `katasandbox ${name} is not on a node yet`);
    const ep = await deps.streams.endpoint(node);
    const abort = new AbortController();
    res.once('close', () => abort.abort(new Error('client went away')));
    const query = logOptionsQuery(options);
    const upstream = await deps.streams.get(
      ep,
      `${nodeStreamPath(namespace, name, subresource)}?${query}`,
      abort.signal,
    );
    if (upstream.statusCode !== 200) {
      const text = await readAll(upstream);
      // The user's mistakes pass through; the node agent's own refusals are a bad gateway.
      const code =
        upstream.statusCode === 400 || upstream.statusCode === 404 ? upstream.statusCode : 502;
      return writeStatus(
        res,
        code,
        code === 502 ? `node agent of ${node}: ${text.trim()}` : text.trim(),
      );
    }
    res.writeHead(200, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Cache-Control': 'no-cache',
    });
    res.flushHeaders();
    upstream.pipe(res);
    upstream.once('error', () => res.destroy());
    res.once('close', () => upstream.destroy());
  } catch (err) {
    if (err instanceof StreamError) return writeStatus(res, err.code, err.message);
    deps.logger.warn({ err, namespace, name, subresource }, 'read failed');
    return writeStatus(res, 500, `${subresource} failed: ${String((err as Error).message ?? err)}`);
  }
}

async function readAll(stream: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 64 * 1024) break;
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

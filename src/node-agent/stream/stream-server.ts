// The node agent's stream endpoint: HTTPS (a certificate made at start, published on the node's
// Lease for kata-api to trust), serving only kata-api — a bound token for the stream audience
// whose TokenReview says kata-api's ServiceAccount — and only sandboxes this node agent runs.
// kata-api has already authorized the user; this endpoint trusts kata-api's word, nobody else's.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../../observability/logger.js';
import { bearerToken } from '../../observability/metrics-auth.js';
import { KATA_API_USERNAME, STREAM_TOKEN_AUDIENCE } from '../../subresources/contract.js';
import { parseLogOptions, sinceMs } from '../../subresources/log-options.js';
import { LogRenderer } from '../runtime/log-format.js';
import type { ContainerRunState } from '../state-store.js';
import { readLog, type LogReadOptions } from './log-reader.js';
import { previousLogFile } from '../runtime/container-log.js';
import type { BuiltProcess } from '../../agent/process-spec.js';
import type { OutputTap } from '../runtime/output-tap.js';
import {
  chooseProtocol,
  errorStatus,
  parseConsoleOptions,
  parseStreamOptions,
  type StreamOptions,
} from '../../subresources/stream-protocol.js';
import { runAttach, runExec, sendStatusAndClose, type ProcessAgent } from './process-session.js';
import { runConsole } from './console-session.js';

/** What the endpoint needs of a sandbox this node agent runs. */
export interface StreamSandbox {
  /** `<logDir>/<ns>_<name>_<uid>`. */
  logDir: string;
  containerNames: string[];
  container(name: string): ContainerRunState | undefined;
  /** The VM's serial console output, once QEMU was started. */
  consoleFile?: string;
  /** QEMU's console socket (input), for VMs started with one. */
  consoleSocket?: string;
  /** The sandbox has ended (its VM is gone or going). */
  ended(): boolean;
  /** The guest agent of the running VM (exec, attach); undefined while there is none. */
  agent?(): ProcessAgent | undefined;
  /** exec's process in a container: `command` with the container's env, working dir, user. */
  execProcess?(container: string, command: string[], tty: boolean): BuiltProcess;
  /** A container's output as it is written (attach). */
  output?(container: string): OutputTap;
}

export interface StreamServerOptions {
  port: number;
  host: string;
  cert: string;
  key: string;
  /** The user of a bound token for `audiences`; undefined when it is not valid. */
  reviewToken: (token: string, audiences: string[]) => Promise<{ username: string } | undefined>;
  /** A sandbox of this node by namespace and name. */
  sandbox: (namespace: string, name: string) => StreamSandbox | undefined;
  allowedUsername?: string;
  logger: Logger;
}

const ROUTE = /^\/v1\/namespaces\/([a-z0-9-]{1,63})\/katasandboxes\/([a-z0-9.-]{1,253})\/([a-z]+)$/;
const TOKEN_TTL_MS = 60_000;

function reply(res: ServerResponse, code: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(`${message}\n`);
}

/** An HTTP answer on a socket whose upgrade is refused, then closed. */
function refuseUpgrade(socket: Duplex, code: number, message: string): void {
  if (socket.destroyed) return;
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? 'Error'}\r\n` +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Remembers accepted tokens briefly (by hash) so a follow per keystroke is not a TokenReview each. */
class TokenCache {
  private readonly ok = new Map<string, number>();
  has(token: string, now: number): boolean {
    const until = this.ok.get(this.key(token));
    return until !== undefined && until > now;
  }
  add(token: string, now: number): void {
    if (this.ok.size > 64) this.ok.clear();
    this.ok.set(this.key(token), now + TOKEN_TTL_MS);
  }
  private key(token: string): string {
    return createHash('sha256').update(token).digest('hex');
  }
}

/** Until `res` can take more, or the stream is cancelled; no listener outlives the wait. */
function drained(res: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    res.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

export class StreamServer {
  private server?: Server;
  private readonly tokens = new TokenCache();
  private readonly open = new Set<AbortController>();
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: 4 << 20,
    handleProtocols: (offered) => chooseProtocol(offered) ?? false,
  });

  constructor(private readonly opts: StreamServerOptions) {}

  async start(): Promise<number> {
    const server = createServer({ cert: this.opts.cert, key: this.opts.key }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.opts.logger.warn({ err }, 'stream request failed');
        reply(res, 500, 'internal error');
      });
    });
    this.server = server;
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.upgrade(req, socket, head).catch((err: unknown) => {
        this.opts.logger.warn({ err }, 'stream upgrade failed');
        refuseUpgrade(socket, 500, 'internal error');
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    const addr = server.address();
    return typeof addr === 'object' && addr ? addr.port : this.opts.port;
  }

  /** Streams still open (tests check none outlives its client). */
  get openStreams(): number {
    return this.open.size;
  }

  async close(): Promise<void> {
    for (const a of this.open) a.abort(new Error('stream server closing'));
    for (const ws of this.wss.clients) ws.terminate();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async authenticated(req: IncomingMessage): Promise<string | undefined> {
    const token = bearerToken(req.headers.authorization);
    if (!token) return 'no bearer token';
    const now = Date.now();
    if (this.tokens.has(token, now)) return undefined;
    const user = await this.opts.reviewToken(token, [STREAM_TOKEN_AUDIENCE]);
    if (!user) return 'token not valid for this endpoint';
    if (user.username !== (this.opts.allowedUsername ?? KATA_API_USERNAME)) {
      return `${user.username} may not use this endpoint`;
    }
    this.tokens.add(token, now);
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const refused = await this.authenticated(req);
    if (refused) {
      this.opts.logger.warn({ why: refused, remote: req.socket.remoteAddress }, 'stream refused');
      reply(res, refused === 'no bearer token' ? 401 : 403, refused);
      return;
    }
    const url = new URL(req.url ?? '/', 'https://node-agent');
    const m = ROUTE.exec(url.pathname);
    if (!m || req.method !== 'GET') {
      reply(res, 404, 'not found');
      return;
    }
    const [, namespace = '', name = '', sub = ''] = m;
    const sandbox = this.opts.sandbox(namespace, name);
    if (!sandbox) {
      reply(res, 404, `katasandbox ${namespace}/${name} does not run on this node`);
      return;
    }
    if (sub === 'log') return this.serveLog(url.searchParams, sandbox, req, res);
    if (sub === 'console') return this.serveConsole(url.searchParams, sandbox, req, res);
    reply(res, 501, `${sub}: not implemented by this node agent`);
  }

  /** exec and attach: WebSocket streams (v5.channel.k8s.io), refused before the upgrade if bad. */
  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    const refused = await this.authenticated(req);
    if (refused) {
      this.opts.logger.warn({ why: refused, remote: req.socket.remoteAddress }, 'stream refused');
      return refuseUpgrade(socket, refused === 'no bearer token' ? 401 : 403, refused);
    }
    const url = new URL(req.url ?? '/', 'https://node-agent');
    const m = ROUTE.exec(url.pathname);
    const sub = m?.[3];
    if (!m || req.method !== 'GET' || (sub !== 'exec' && sub !== 'attach' && sub !== 'console')) {
      return refuseUpgrade(socket, 404, 'not found');
    }
    const [, namespace = '', name = ''] = m;
    const sandbox = this.opts.sandbox(namespace, name);
    if (!sandbox) {
      return refuseUpgrade(
        socket,
        404,
        `katasandbox ${namespace}/${name} does not run on this node`,
      );
    }
    if (sub === 'console') return this.upgradeConsole(url.searchParams, sandbox, req, socket, head);
    const parsed = parseStreamOptions(url.searchParams, sub);
    if (!parsed.ok) return refuseUpgrade(socket, 400, parsed.message);
    const o = parsed.value;
    const container =
      o.container ?? (sandbox.containerNames.length === 1 ? sandbox.containerNames[0] : undefined);
    if (!container || !sandbox.containerNames.includes(container)) {
      return refuseUpgrade(
        socket,
        400,
        `container: ${o.container ?? '(none)'} is not one of ${sandbox.containerNames.join(', ')}`,
      );
    }
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',');
    if (!chooseProtocol(offered)) {
      return refuseUpgrade(socket, 400, 'Sec-WebSocket-Protocol: offer v5.channel.k8s.io');
    }
    const abort = new AbortController();
    this.open.add(abort);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      abort.signal.addEventListener('abort', () => ws.terminate(), { once: true });
      this.session(ws, sub, sandbox, container, o)
        .catch((err: unknown) => {
          this.opts.logger.warn({ err, namespace, name, sub }, 'stream session failed');
          ws.terminate();
        })
        .finally(() => this.open.delete(abort));
    });
  }

  /** console: the VM's serial console, output followed and (with stdin=true) input. */
  private upgradeConsole(
    q: URLSearchParams,
    sandbox: StreamSandbox,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
  ): void {
    const parsed = parseConsoleOptions(q);
    if (!parsed.ok) return refuseUpgrade(socket, 400, parsed.message);
    const logFile = sandbox.consoleFile;
    if (!logFile) return refuseUpgrade(socket, 404, 'the sandbox has no VM console yet');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',');
    if (!chooseProtocol(offered)) {
      return refuseUpgrade(socket, 400, 'Sec-WebSocket-Protocol: offer v5.channel.k8s.io');
    }
    const abort = new AbortController();
    this.open.add(abort);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      abort.signal.addEventListener('abort', () => ws.terminate(), { once: true });
      runConsole(ws, {
        logFile,
        ...(sandbox.consoleSocket && { socket: sandbox.consoleSocket }),
        stdin: parsed.value.stdin,
        ...(parsed.value.tailLines !== undefined && { tailLines: parsed.value.tailLines }),
        ended: () => sandbox.ended(),
        logger: this.opts.logger,
      })
        .catch((err: unknown) => this.opts.logger.warn({ err }, 'console session failed'))
        .finally(() => this.open.delete(abort));
    });
  }

  private async session(
    ws: WebSocket,
    sub: 'exec' | 'attach',
    sandbox: StreamSandbox,
    container: string,
    o: StreamOptions,
  ): Promise<void> {
    const agent = sandbox.agent?.();
    const run = sandbox.container(container);
    if (!agent || sandbox.ended()) {
      return sendStatusAndClose(ws, errorStatus('the sandbox has no running VM'));
    }
    if (run?.state !== 'Running') {
      return sendStatusAndClose(
        ws,
        errorStatus(`container ${container} is not running (${run?.state ?? 'not created'})`),
      );
    }
    const target = { agent, containerId: container, options: o, logger: this.opts.logger };
    if (sub === 'exec') {
      if (!sandbox.execProcess) return sendStatusAndClose(ws, errorStatus('exec not available'));
      let built: BuiltProcess;
      try {
        built = sandbox.execProcess(container, o.command, o.tty);
      } catch (err) {
        return sendStatusAndClose(ws, errorStatus((err as Error).message));
      }
      return runExec(ws, target, built);
    }
    const tap = sandbox.output?.(container);
    if (!tap) return sendStatusAndClose(ws, errorStatus('attach not available'));
    return runAttach(ws, target, tap, () =>
      agent.waitProcess(container, container, { timeoutMs: 5_000 }).catch(() => undefined),
    );
  }

  /** The console's output so far (read only), followed while the sandbox lives. */
  private async serveConsole(
    q: URLSearchParams,
    sandbox: StreamSandbox,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const parsed = parseLogOptions(q);
    if (!parsed.ok) return reply(res, 400, parsed.message);
    const o = parsed.value;
    if (o.container || o.previous) return reply(res, 400, 'console: no container, no previous');
    if (o.timestamps || o.sinceSeconds !== undefined || o.sinceTime !== undefined) {
      return reply(
        res,
        400,
        'console: no timestamps, sinceSeconds or sinceTime (QEMU keeps no times)',
      );
    }
    if (!sandbox.consoleFile) return reply(res, 404, 'the sandbox has no VM console yet');
    await this.stream(res, req, {
      file: sandbox.consoleFile,
      follow: o.follow,
      ended: () => sandbox.ended(),
      ...(o.tailLines !== undefined && { tailLines: o.tailLines }),
      ...(o.limitBytes !== undefined && { limitBytes: o.limitBytes }),
    });
  }

  private async serveLog(
    q: URLSearchParams,
    sandbox: StreamSandbox,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const parsed = parseLogOptions(q);
    if (!parsed.ok) return reply(res, 400, parsed.message);
    const o = parsed.value;
    const name =
      o.container ?? (sandbox.containerNames.length === 1 ? sandbox.containerNames[0] : undefined);
    if (!name || !sandbox.containerNames.includes(name)) {
      return reply(
        res,
        400,
        `container: ${o.container ?? '(none)'} is not one of ${sandbox.containerNames.join(', ')}`,
      );
    }
    const current = path.join(sandbox.logDir, `${name}.log`);
    const run = sandbox.container(name);
    if (o.previous && !(run && run.restartCount > 0)) {
      return reply(res, 400, `previous terminated container "${name}" not found`);
    }
    const startedCount = run?.restartCount ?? 0;
    // The run being followed ends when it exits or a new run starts.
    const ended = (): boolean => {
      const now = sandbox.container(name);
      return !now || now.state === 'Exited' || now.restartCount !== startedCount;
    };
    const since = sinceMs(o, Date.now());
    await this.stream(
      res,
      req,
      {
        file: o.previous ? previousLogFile(current) : current,
        follow: o.follow && !o.previous,
        ended,
        ...(o.tailLines !== undefined && { tailLines: o.tailLines }),
      },
      new LogRenderer({
        timestamps: o.timestamps,
        ...(since !== undefined && { sinceMs: since }),
        ...(o.limitBytes !== undefined && { limitBytes: o.limitBytes }),
      }),
    );
  }

  /** Writes a file's content (and what is appended, if followed) with backpressure. */
  private async stream(
    res: ServerResponse,
    req: IncomingMessage,
    read: Omit<LogReadOptions, 'signal'>,
    /** A container log's records turned back into output; none: the file as it is (console). */
    render?: LogRenderer,
  ): Promise<void> {
    const abort = new AbortController();
    this.open.add(abort);
    const onClose = (): void => abort.abort(new Error('client went away'));
    res.once('close', onClose);
    req.socket.setTimeout(0);
    try {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.flushHeaders();
      for await (const raw of readLog({ ...read, signal: abort.signal })) {
        const chunk = render ? render.push(raw) : raw;
        if (chunk.length > 0 && !res.write(chunk)) await drained(res, abort.signal);
        if (render?.full) break;
      }
      const last = render?.flush();
      if (last && last.length > 0) res.write(last);
      res.end();
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    } finally {
      res.off('close', onClose);
      this.open.delete(abort);
    }
  }
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Registry } from 'prom-client';
import type { AuthDecision } from './metrics-auth.js';

export interface ProbeServerOptions {
  port: number;
  host?: string;
  registry: Registry;
  /** /readyz answers 200 only while this is true. */
  ready: () => boolean;
  /**
   * HTTPS with this certificate, /metrics only for requests `authorize` allows; /healthz and
   * /readyz stay open (kubelet probes them without a token). Absent: plain HTTP, no checks.
   */
  secure?: {
    cert: string;
    key: string;
    authorize: (authorization: string | undefined, path: string) => Promise<AuthDecision>;
    /** A refused or failed authorization, for the log. */
    onRefused?: (decision: AuthDecision, remote: string | undefined) => void;
  };
}

function serveMetrics(registry: Registry, res: ServerResponse): void {
  registry.metrics().then(
    (text) => {
      res.writeHead(200, { 'Content-Type': registry.contentType });
      res.end(text);
    },
    (err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    },
  );
}

/** /metrics, /healthz and /readyz on one small HTTP(S) server. */
export function startProbeServer(opts: ProbeServerOptions): Promise<Server> {
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/metrics') {
      const secure = opts.secure;
      if (!secure) return serveMetrics(opts.registry, res);
      secure.authorize(req.headers.authorization, path).then(
        (d) => {
          if (d.status === 200) return serveMetrics(opts.registry, res);
          secure.onRefused?.(d, req.socket.remoteAddress);
          res.writeHead(d.status, {
            'Content-Type': 'text/plain; charset=utf-8',
            ...(d.status === 401 && { 'WWW-Authenticate': 'Bearer' }),
          });
          res.end(`${d.message}\n`);
        },
        (err: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
          res.end(`Internal Server Error: ${String(err)}\n`);
        },
      );
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200).end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const ok = opts.ready();
      res.writeHead(ok ? 200 : 503).end(ok ? 'ok\n' : 'not ready\n');
      return;
    }
    res.writeHead(404).end('not found\n');
  };
  const server: Server = opts.secure
    ? createHttpsServer({ cert: opts.secure.cert, key: opts.secure.key }, handle)
    : createServer(handle);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve(server));
  });
}

import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface ProbeServerOptions {
  port: number;
  host?: string;
  registry: Registry;
  /** /readyz answers 200 only while this is true. */
  ready: () => boolean;
}

/** /metrics, /healthz and /readyz on one small HTTP server. */
export function startProbeServer(opts: ProbeServerOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': opts.registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
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
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve(server));
  });
}

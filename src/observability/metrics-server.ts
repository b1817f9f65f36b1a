// How a component serves /metrics, /healthz and /readyz, from its settings: by default HTTPS on
// every address with /metrics behind TokenReview + SubjectAccessReview (a certificate from files,
// re-read when they change, or a self-signed one made at start); with metricsSecure false, plain
// HTTP on 127.0.0.1 only, for local runs and tests. Shared by the controller and the node agent.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { kubeAccessReviews } from '../kube/access-reviews.js';
import { startProbeServer } from './http-server.js';
import { MetricsAuthorizer } from './metrics-auth.js';
import { metricsCertProblem, type MetricsServingConfig } from './metrics-serving-config.js';
import { selfSignedCertificate } from './self-signed-cert.js';

export interface MetricsServerOptions {
  config: MetricsServingConfig;
  kc: KubeConfig;
  registry: Registry;
  ready: () => boolean;
  log: Logger;
  /** The self-signed certificate's subject and extra names (e.g. the metrics Service's). */
  commonName: string;
  dnsNames?: readonly string[];
  /** How often certificate files are looked at again. Default 60 s. */
  certReloadMs?: number;
}

export interface RunningMetricsServer {
  server: Server;
  port: number;
  scheme: 'http' | 'https';
}

const CERT_RELOAD_MS = 60_000;

export async function startMetricsServer(
  opts: MetricsServerOptions,
): Promise<RunningMetricsServer> {
  const c = opts.config;
  const problem = metricsCertProblem(c);
  if (problem) throw new Error(problem);
  if (!c.metricsSecure) {
    const server = await startProbeServer({
      port: c.metricsPort,
      host: '127.0.0.1',
      registry: opts.registry,
      ready: opts.ready,
    });
    return running(server, 'http');
  }
  const fromFiles = (): { cert: string; key: string } => ({
    cert: readFileSync(c.metricsCertFile ?? '', 'utf8'),
    key: readFileSync(c.metricsKeyFile ?? '', 'utf8'),
  });
  let pair: { cert: string; key: string };
  if (c.metricsCertFile) {
    pair = fromFiles();
  } else {
    const made = selfSignedCertificate({
      commonName: opts.commonName,
      hosts: [hostname(), 'localhost', '127.0.0.1', '::1', ...(opts.dnsNames ?? [])],
    });
    pair = { cert: made.certPem, key: made.keyPem };
  }
  const auth = new MetricsAuthorizer({ reviews: kubeAccessReviews(opts.kc) });
  const server = await startProbeServer({
    port: c.metricsPort,
    registry: opts.registry,
    ready: opts.ready,
    secure: {
      ...pair,
      authorize: (header, path) => auth.decide(header, path),
      onRefused: (d, remote) =>
        opts.log.info(
          { status: d.status, remote, ...(d.username && { user: d.username }) },
          `refused /metrics: ${d.message}`,
        ),
    },
  });
  // A certificate from files (cert-manager, a mounted Secret) is rotated in place: follow it.
  if (c.metricsCertFile) {
    const reload = setInterval(() => {
      try {
        const next = fromFiles();
        if (next.cert === pair.cert && next.key === pair.key) return;
        (server as HttpsServer).setSecureContext(next);
        pair = next;
        opts.log.info({ file: c.metricsCertFile }, 'metrics serving certificate reloaded');
      } catch (err) {
        opts.log.warn({ err }, 'metrics serving certificate not reloaded; keeping the old one');
      }
    }, opts.certReloadMs ?? CERT_RELOAD_MS);
    reload.unref();
  }
  return running(server, 'https');
}

function running(server: Server, scheme: 'http' | 'https'): RunningMetricsServer {
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : 0, scheme };
}

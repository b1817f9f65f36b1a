#!/usr/bin/env node
// kata-api: the aggregated API subresources.kata.sandbox.io/v1alpha1. kube-apiserver
// authenticates users and proxies their requests here with its front-proxy certificate; each is
// authorized with a SubjectAccessReview and served by the node agent of the sandbox's node.
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ResourceAttributes } from '../kube/access-reviews.js';
import type { UserInfo } from '../observability/metrics-auth.js';
import { createServer } from 'node:https';
import { reviewResourceAccess } from '../kube/access-reviews.js';
import { callApi, loadKubeConfig, makeClients, type KubeClients } from '../kube/kube-client.js';
import type { CertificatePair } from '../observability/self-signed-cert.js';
import { ensureServingSecret, trustInApiService } from './serving-cert.js';
import { createLogger } from '../observability/logger.js';
import { processShutdown } from '../common/process-shutdown.js';
import { apiHandler, upgradeHandler } from './api-handler.js';
import { writeStatus } from './api-status.js';
import { KATA_API_HELP, kataApiConfig } from './config.js';
import { requestHeaderConfigFromConfigMap, type RequestHeaderConfig } from './front-proxy.js';
import { NodeStreams } from './node-streams.js';

const log = createLogger('kata-api');
/** How often the request-header settings are re-read (the CA may be rotated). */
const REQUEST_HEADER_REFRESH_MS = 60_000;

async function servingCertificate(
  certFile: string | undefined,
  keyFile: string | undefined,
  clients: KubeClients,
): Promise<CertificatePair> {
  if (certFile && keyFile) {
    return { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
  }
  return ensureServingSecret(clients);
}

async function main(): Promise<void> {
  const cfg = kataApiConfig(process.argv.slice(2), process.env);
  if (cfg.help) {
    process.stdout.write(KATA_API_HELP);
    return;
  }
  const kc = loadKubeConfig({ ...(cfg.kubeconfig && { path: cfg.kubeconfig }) });
  const clients = makeClients(kc);
  const readRequestHeader = async (): Promise<RequestHeaderConfig> => {
    const cm = await callApi('get extension-apiserver-authentication', () =>
      clients.core.readNamespacedConfigMap({
        namespace: 'kube-system',
        name: 'extension-apiserver-authentication',
      }),
    );
    return requestHeaderConfigFromConfigMap(cm.data);
  };
  let requestHeader = await readRequestHeader();
  const serving = await servingCertificate(cfg.tlsCertFile, cfg.tlsKeyFile, clients);
  if (!cfg.tlsCertFile) await trustInApiService(kc, serving.certPem, log);
  const server = createServer(
    {
      cert: serving.certPem,
      key: serving.keyPem,
      // The front proxy's certificate is asked for and checked per request (api-handler):
      // probes and discovery without one still get an answer saying why they are refused.
      requestCert: true,
      rejectUnauthorized: false,
      ca: requestHeader.caPem,
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        log.warn({ err }, 'request failed');
        writeStatus(res, 500, 'internal error');
      });
    },
  );
  const deps = {
    requestHeader: () => requestHeader,
    review: (user: UserInfo, attrs: ResourceAttributes) => reviewResourceAccess(kc, user, attrs),
    streams: new NodeStreams({ clients, tokenFile: cfg.streamTokenFile }),
    logger: log,
  };
  const handle = apiHandler(deps);
  const handleUpgrade = upgradeHandler(deps);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    handleUpgrade(req, socket, head).catch((err: unknown) => {
      log.warn({ err }, 'upgrade failed');
      socket.destroy();
    });
  });
  const refresh = setInterval(() => {
    readRequestHeader().then(
      (next) => {
        if (next.caPem !== requestHeader.caPem) {
          server.setSecureContext({ cert: serving.certPem, key: serving.keyPem, ca: next.caPem });
        }
        requestHeader = next;
      },
      (err: unknown) => log.warn({ err }, 're-reading the request-header settings failed'),
    );
  }, REQUEST_HEADER_REFRESH_MS);
  refresh.unref();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.bindAddress, () => resolve());
  });
  const addr = server.address();
  log.info(
    {
      port: typeof addr === 'object' && addr ? addr.port : cfg.port,
      allowedNames: requestHeader.allowedNames,
    },
    'serving subresources.kata.sandbox.io',
  );
  processShutdown(async (code) => {
    clearInterval(refresh);
    server.closeAllConnections();
    server.close();
    process.exit(code);
  }, log);
}

main().catch((err: unknown) => {
  log.fatal({ err }, 'kata-api failed');
  process.exit(1);
});

// Starts the node agent's stream endpoint with a certificate made for this start, and says what
// to publish on the node's Lease so kata-api finds it and trusts exactly that certificate.
import type { KubeConfig } from '@kubernetes/client-node';
import { isIP } from 'node:net';
import path from 'node:path';
import { vmFiles } from '../hypervisor/sandbox-vm.js';
import { reviewBoundToken } from '../../kube/access-reviews.js';
import type { Logger } from '../../observability/logger.js';
import { selfSignedCertificate } from '../../observability/self-signed-cert.js';
import { STREAM_CA_ANNOTATION, STREAM_ENDPOINT_ANNOTATION } from '../../subresources/contract.js';
import type { NodeAgentConfig } from '../config.js';
import { sandboxLogDir } from '../runtime/container-log.js';
import type { SandboxRuntime } from '../runtime/sandbox-runtime.js';
import { StreamServer } from './stream-server.js';

export interface StreamEndpoint {
  server: StreamServer;
  annotations: Record<string, string>;
}

/** `https://host:port`, brackets around an IPv6 address. Pure. */
export function endpointUrl(host: string, port: number): string {
  return `https://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

/** The Lease annotations that publish an endpoint and the certificate it serves. Pure. */
export function streamAnnotations(url: string, certPem: string): Record<string, string> {
  return {
    [STREAM_ENDPOINT_ANNOTATION]: url,
    [STREAM_CA_ANNOTATION]: Buffer.from(certPem).toString('base64'),
  };
}

export async function startStreamEndpoint(
  cfg: Pick<
    NodeAgentConfig,
    'nodeName' | 'logDir' | 'streamPort' | 'streamBindAddress' | 'streamAddress'
  >,
  kc: KubeConfig,
  runtimes: () => Iterable<SandboxRuntime>,
  logger: Logger,
): Promise<StreamEndpoint> {
  const cert = selfSignedCertificate({
    commonName: `kata-node-agent-${cfg.nodeName}`,
    hosts: [cfg.streamAddress],
  });
  const server = new StreamServer({
    port: cfg.streamPort,
    host: cfg.streamBindAddress || cfg.streamAddress,
    cert: cert.certPem,
    key: cert.keyPem,
    reviewToken: (token, audiences) => reviewBoundToken(kc, token, audiences),
    sandbox: (namespace, name) => {
      for (const rt of runtimes()) {
        const st = rt.state;
        if (st.namespace !== namespace || st.name !== name) continue;
        return {
          logDir: sandboxLogDir(cfg.logDir, st),
          containerNames: rt.spec.containers.map((c) => c.name),
          container: (c) => rt.state.containers[c],
          ...(st.qemu?.info.consoleLog && {
            consoleFile: st.qemu.info.consoleLog,
            consoleSocket: vmFiles(path.dirname(st.qemu.info.consoleLog)).consoleSocket,
          }),
          ended: () => rt.ended,
          agent: () => rt.agentClient,
          execProcess: (c, command, tty) => rt.execProcess(c, command, tty),
          output: (c) => rt.outputOf(c),
        };
      }
      return undefined;
    },
    logger,
  });
  const port = await server.start();
  const url = endpointUrl(cfg.streamAddress, port);
  logger.info({ url }, 'serving the stream endpoint for kata-api');
  return { server, annotations: streamAnnotations(url, cert.certPem) };
}

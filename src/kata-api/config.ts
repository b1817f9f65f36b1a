// kata-api's flags: each with an environment variable, a flag winning.
import { parseArgs } from 'node:util';

export interface KataApiConfig {
  kubeconfig?: string;
  bindAddress: string;
  port: number;
  /** Both or neither; neither: the Secret-kept self-signed certificate (serving-cert.ts). */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  streamTokenFile: string;
  help: boolean;
}

export const DEFAULT_STREAM_TOKEN_FILE = '/var/run/secrets/kata-api/stream/token';

export const KATA_API_HELP = `kata-api: serves the aggregated API subresources.kata.sandbox.io (log of
KataSandboxes) behind kube-apiserver's aggregation layer.

Flags (environment variable in brackets):
  --kubeconfig PATH        kubeconfig to use [KUBECONFIG]; default: in-cluster, then ~/.kube/config
  --bind-address ADDR      address to listen on [BIND_ADDRESS] (default 0.0.0.0)
  --port N                 HTTPS port; 0 picks one [PORT] (default 8443)
  --tls-cert-file PATH     PEM serving certificate, valid for kata-api.kata-system.svc, which the
                           APIService's caBundle must trust [TLS_CERT_FILE] (default: a
                           self-signed one kept in Secret kata-system/kata-api-serving-cert, made
                           by the first replica, and set as the APIService's caBundle)
  --tls-key-file PATH      its PEM private key [TLS_KEY_FILE]
  --stream-token-file PATH a bound ServiceAccount token for the audience kata-node-agent-stream,
                           re-read at each use (a projected token kubelet rotates)
                           [STREAM_TOKEN_FILE] (default ${DEFAULT_STREAM_TOKEN_FILE})
  --help                   this text
`;

export function kataApiConfig(argv: string[], env: NodeJS.ProcessEnv): KataApiConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: 'string' },
      'bind-address': { type: 'string' },
      port: { type: 'string' },
      'tls-cert-file': { type: 'string' },
      'tls-key-file': { type: 'string' },
      'stream-token-file': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  const help = values.help ?? false;
  const rawPort = values.port ?? env.PORT ?? '8443';
  const port = Number(rawPort);
  if (!/^[0-9]+$/.test(rawPort) || port > 65535) {
    throw new Error(`--port: ${JSON.stringify(rawPort)} is not a port number`);
  }
  const tlsCertFile = values['tls-cert-file'] ?? env.TLS_CERT_FILE ?? '';
  const tlsKeyFile = values['tls-key-file'] ?? env.TLS_KEY_FILE ?? '';
  if (Boolean(tlsCertFile) !== Boolean(tlsKeyFile)) {
    throw new Error('--tls-cert-file and --tls-key-file go together: set both or neither');
  }
  const kubeconfig = values.kubeconfig ?? env.KUBECONFIG;
  return {
    ...(kubeconfig && { kubeconfig }),
    bindAddress: values['bind-address'] ?? env.BIND_ADDRESS ?? '0.0.0.0',
    port,
    ...(tlsCertFile && { tlsCertFile }),
    ...(tlsKeyFile && { tlsKeyFile }),
    streamTokenFile:
      values['stream-token-file'] ?? env.STREAM_TOKEN_FILE ?? DEFAULT_STREAM_TOKEN_FILE,
    help,
  };
}

import { parseArgs } from 'node:util';
import { NODE_LEASE_DURATION_SECONDS } from '../kube/lease.js';
import { metricsCertProblem } from '../observability/metrics-serving-config.js';

export interface ControllerConfig {
  kubeconfig?: string;
  metricsPort: number;
  /** HTTPS with TokenReview + SubjectAccessReview on /metrics; false: plain HTTP on 127.0.0.1. */
  metricsSecure: boolean;
  metricsCertFile?: string;
  metricsKeyFile?: string;
  concurrency: number;
  leaderElect: boolean;
  identity: string;
  /** Only sandboxes of this namespace ('' = all). */
  watchNamespace: string;
  leaderElectionId: string;
  /** The longest node Lease duration honoured (a Lease cannot claim to stay fresh for longer). */
  maxNodeLeaseSeconds: number;
  help: boolean;
}

export const CONTROLLER_HELP = `kata-controller: schedules KataSandboxes to nodes and keeps their phase true.

Flags (environment variable in brackets):
  --kubeconfig PATH     kubeconfig to use [KUBECONFIG]; default: in-cluster, then ~/.kube/config
  --metrics-port N      port of /metrics, /healthz, /readyz [METRICS_PORT] (default 8080)
  --metrics-secure BOOL HTTPS on every address, /metrics only for a bearer token allowed to get
                        the non-resource URL /metrics (TokenReview + SubjectAccessReview);
                        false: plain HTTP on 127.0.0.1, no authentication, for local use
                        [METRICS_SECURE] (default true)
  --metrics-cert-file PATH
                        PEM serving certificate for /metrics, re-read when it changes
                        [METRICS_CERT_FILE] (default: a self-signed one made at start)
  --metrics-key-file PATH
                        its PEM private key [METRICS_KEY_FILE]
  --concurrency N       sandboxes reconciled at once [CONCURRENCY] (default 8)
  --leader-elect BOOL   contend for Lease kata-system/kata-controller [LEADER_ELECT] (default true)
  --identity NAME       this replica's name in the election [POD_NAME] (default hostname-pid)
  --watch-namespace NS  reconcile only the sandboxes of NS [WATCH_NAMESPACE] (default: all)
  --leader-election-id NAME
                        the election Lease in kata-system [LEADER_ELECTION_ID] (default kata-controller)
  --max-node-lease-seconds N
                        longest node agent Lease duration honoured; a node whose Lease was not
                        seen to renew for that long is lost [MAX_NODE_LEASE_SECONDS] (default 40)
  --help                this text
`;

function int(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`--${name}: ${JSON.stringify(raw)} is not a non-negative integer`);
  return n;
}

/** Flags win over the environment, which wins over defaults. */
export function controllerConfig(
  argv: string[],
  env: NodeJS.ProcessEnv,
  host: string,
): ControllerConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-secure': { type: 'string' },
      'metrics-cert-file': { type: 'string' },
      'metrics-key-file': { type: 'string' },
      concurrency: { type: 'string' },
      'leader-elect': { type: 'string' },
      identity: { type: 'string' },
      'watch-namespace': { type: 'string' },
      'leader-election-id': { type: 'string' },
      'max-node-lease-seconds': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  const bool = (name: string, raw: string): boolean => {
    if (raw !== 'true' && raw !== 'false') {
      throw new Error(`--${name}: ${JSON.stringify(raw)} must be true or false`);
    }
    return raw === 'true';
  };
  const leader = values['leader-elect'] ?? env.LEADER_ELECT ?? 'true';
  const secure = values['metrics-secure'] ?? env.METRICS_SECURE ?? 'true';
  const certFile = values['metrics-cert-file'] ?? env.METRICS_CERT_FILE;
  const keyFile = values['metrics-key-file'] ?? env.METRICS_KEY_FILE;
  const cfg: ControllerConfig = {
    kubeconfig: values.kubeconfig ?? env.KUBECONFIG,
    metricsPort: int('metrics-port', values['metrics-port'] ?? env.METRICS_PORT, 8080),
    metricsSecure: bool('metrics-secure', secure),
    ...(certFile && { metricsCertFile: certFile }),
    ...(keyFile && { metricsKeyFile: keyFile }),
    concurrency: Math.max(1, int('concurrency', values.concurrency ?? env.CONCURRENCY, 8)),
    leaderElect: bool('leader-elect', leader),
    identity: values.identity ?? env.POD_NAME ?? `${host}-${process.pid}`,
    watchNamespace: values['watch-namespace'] ?? env.WATCH_NAMESPACE ?? '',
    leaderElectionId: values['leader-election-id'] ?? env.LEADER_ELECTION_ID ?? 'kata-controller',
    maxNodeLeaseSeconds: Math.max(
      1,
      int(
        'max-node-lease-seconds',
        values['max-node-lease-seconds'] ?? env.MAX_NODE_LEASE_SECONDS,
        NODE_LEASE_DURATION_SECONDS,
      ),
    ),
    help: values.help ?? false,
  };
  const certProblem = metricsCertProblem(cfg);
  if (certProblem) throw new Error(certProblem);
  return cfg;
}

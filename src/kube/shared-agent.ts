// One keep-alive connection pool per API identity. @kubernetes/client-node makes a new
// https.Agent for every request (KubeConfig.createAgent), so every call paid a TCP and TLS
// handshake and parsed the certificates again: 57 % of the controller's CPU at 2,000 sandboxes.
// Every KubeConfig in the project comes from newKubeConfig(), whose createAgent hands out the
// pool of the identity instead.
import { KubeConfig } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';

type Cluster = NonNullable<ReturnType<KubeConfig['getCurrentCluster']>>;
type AgentOptions = https.AgentOptions & Record<string, unknown>;
type CreateAgent = (cluster: Cluster | null, options: AgentOptions) => http.Agent;

/** The agent options that decide who we are to the server and whom we trust. */
const IDENTITY_FIELDS = [
  'ca',
  'cert',
  'key',
  'pfx',
  'passphrase',
  'servername',
  'rejectUnauthorized',
] as const;

/**
 * A stable digest of the server, proxy and TLS material: equal digests can share connections.
 * Credentials rotated on disk (client-node re-reads cert and key files per request) give a new
 * digest, so the next request opens a connection with the new material. Pure.
 */
export function identityDigest(cluster: Cluster | null, options: AgentOptions): string {
  const h = createHash('sha256');
  const part = (v: unknown): void => {
    const b = Buffer.isBuffer(v) ? v : Buffer.from(v === undefined ? '' : JSON.stringify(v));
    h.update(String(b.length)).update(':').update(b);
  };
  part(cluster?.server);
  part(cluster?.proxyUrl);
  part(cluster?.skipTLSVerify);
  for (const f of IDENTITY_FIELDS) part(options[f]);
  return h.digest('hex');
}

type User = ReturnType<KubeConfig['getCurrentUser']>;

/**
 * Where an identity's pool lives: the server and the user as named, with the files its material
 * is read from. New material in the same slot (a rotated certificate file) retires the old pool;
 * inline material that differs is another identity, hence another slot.
 */
const slotOf = (cluster: Cluster | null, user: User): string =>
  JSON.stringify([
    cluster?.server,
    cluster?.proxyUrl,
    user?.name,
    user?.certFile ?? user?.certData,
    user?.keyFile ?? user?.keyData,
  ]);

interface Pool {
  digest: string;
  agent: http.Agent;
}

const IDLE_SOCKET_MS = 30_000;
const pools = new Map<string, Pool>();
let connections = 0;

/** TCP connections opened by every pooled agent of this process (for tests and benchmarks). */
export function pooledConnections(): number {
  return connections;
}

/** Lets the old pool finish what it carries, then close: no socket goes back to it. */
function retire(agent: http.Agent): void {
  agent.keepSocketAlive = () => false;
  for (const list of Object.values(agent.freeSockets)) for (const s of list ?? []) s.destroy();
}

function pooledAgent(
  fallback: CreateAgent,
  kc: KubeConfig,
  cluster: Cluster | null,
  options: AgentOptions,
): http.Agent {
  // Proxies bring their own agent classes; leave them to client-node.
  if (cluster?.proxyUrl) return fallback(cluster, options);
  const slot = slotOf(cluster, kc.getCurrentUser());
  const digest = identityDigest(cluster, options);
  const have = pools.get(slot);
  if (have?.digest === digest) return have.agent;
  if (have) retire(have.agent);
  const plain = cluster?.server.startsWith('http:') ?? false;
  if (plain && !cluster?.skipTLSVerify) return fallback(cluster, options);
  // `timeout` applies to idle sockets only (Node sets it when a socket goes back to the pool):
  // closing them well before any server would spares a request sent on a socket being closed.
  const pooling = { keepAlive: true, timeout: IDLE_SOCKET_MS };
  const agent = plain ? new http.Agent(pooling) : new https.Agent({ ...options, ...pooling });
  const create = agent.createConnection.bind(agent) as (...a: unknown[]) => unknown;
  // Counted where sockets are born, so a test sees connections, not requests.
  (agent as unknown as { createConnection: (...a: unknown[]) => unknown }).createConnection = (
    ...a: unknown[]
  ) => {
    connections += 1;
    return create(...a);
  };
  pools.set(slot, { digest, agent });
  return agent;
}

/** A KubeConfig whose requests share one keep-alive pool per identity. */
export function newKubeConfig(): KubeConfig {
  // eslint-disable-next-line no-restricted-syntax -- the one place a KubeConfig is made
  const kc = new KubeConfig();
  const self = kc as unknown as { createAgent: CreateAgent };
  const fallback = self.createAgent.bind(kc);
  self.createAgent = (cluster, options) => pooledAgent(fallback, kc, cluster, options);
  return kc;
}

// The cluster of hack/cluster.sh as the tests drive it: its scripts, kubectl with its admin
// kubeconfig, and waits that say what they waited for.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { eventually } from '../integration/controller-harness.js';

const execFileAsync = promisify(execFile);

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLUSTER_SCRIPT = path.join(REPO, 'hack/cluster.sh');
export const IMAGE_SCRIPT = path.join(REPO, 'hack/image.sh');
export const OVERLAY = path.join(REPO, 'hack/cluster/overlay');
export const SYSTEM_NS = 'kata-system';
/** The image the overlay names, and where `make image` builds it. */
export const LOCAL_IMAGE = 'localhost/kata-sandbox-operator:dev';
export const REGISTRY = '127.0.0.1:5055';
export const CLUSTER_IMAGE = `${REGISTRY}/kata-sandbox-operator:dev`;

/** Runs a program (argv, no shell) and returns its stdout; a failure carries its stderr. */
export async function run(
  file: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<string> {
  const child = execFileAsync(file, args, {
    timeout: opts.timeoutMs ?? 60_000,
    env: opts.env ?? process.env,
    maxBuffer: 64 * 1024 * 1024,
    cwd: REPO,
  });
  if (opts.input !== undefined) child.child.stdin?.end(opts.input);
  try {
    return (await child).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${file} ${args.join(' ')}: ${e.message}\n${(e.stderr ?? '').slice(-4000)}`);
  }
}

export class Cluster {
  constructor(readonly kubeconfig: string) {}

  kubectl(args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
    return run('kubectl', ['--kubeconfig', this.kubeconfig, ...args], opts);
  }

  /** kubectl as the holder of a bearer token only (the admin kubeconfig's client certificate would win). */
  async withToken(token: string, args: string[], opts: { input?: string } = {}): Promise<string> {
    const server = await this.kubectl([
      'config',
      'view',
      '--minify',
      '-o',
      'jsonpath={.clusters[0].cluster.server}',
    ]);
    const ca = path.join(path.dirname(this.kubeconfig), 'pki/ca.crt');
    return run(
      'kubectl',
      [
        '--kubeconfig',
        '/dev/null',
        '--server',
        server,
        '--certificate-authority',
        ca,
        '--token',
        token,
        ...args,
      ],
      opts,
    );
  }

  /** A kubeconfig file holding only this cluster and a bearer token (for kubectl plugins). */
  async tokenKubeconfig(token: string, file: string): Promise<string> {
    const server = await this.kubectl([
      ...['config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server}'],
    ]);
    const ca = path.join(path.dirname(this.kubeconfig), 'pki/ca.crt');
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server, 'certificate-authority': ca } }],
      users: [{ name: 'u', user: { token } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    };
    writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
    return file;
  }

  async json<T = Record<string, unknown>>(args: string[]): Promise<T> {
    return JSON.parse(await this.kubectl([...args, '-o', 'json'])) as T;
  }

  /** Pods of a component in kata-system, by app.kubernetes.io/name. */
  async pods(name: string): Promise<Pod[]> {
    const list = await this.json<{ items: Pod[] }>([
      ...['-n', SYSTEM_NS, 'get', 'pods', '-l', `app.kubernetes.io/name=${name}`],
    ]);
    return list.items;
  }
}

export interface Pod {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: {
    serviceAccountName?: string;
    nodeName?: string;
    containers: { image: string }[];
  };
  status: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { ready: boolean; restartCount: number; image: string }[];
  };
}

export const isReady = (p: Pod): boolean =>
  !p.metadata.deletionTimestamp &&
  (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/** `eventually` of the integration harness, polling once a second (each poll runs kubectl). */
export const waitFor = <T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> => eventually(what, fn, timeoutMs, 1000);

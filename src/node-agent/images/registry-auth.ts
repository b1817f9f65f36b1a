// imagePullSecrets → the credentials for one pull, and the auth file skopeo reads for it. The
// caller passes each Secret's parsed `.dockerconfigjson` (or legacy `.dockercfg`) content; the
// entry matching the image is chosen as kubelet's keyring does: same host (a `*` label matches
// one label), same port, the key's path a prefix of the repository, the longest path first, then
// the Secrets' order. Pure.
import type { ImageReference } from './reference.js';
import { DOCKER_HUB } from './reference.js';

export interface PullSecret {
  /** The Secret's name, for messages. */
  name: string;
  /** Parsed JSON of `.dockerconfigjson` ({auths: {...}}) or `.dockercfg` ({host: {...}}). */
  data: unknown;
}

export interface RegistryCredential {
  secret: string;
  /** The key of the entry in the Secret, as written. */
  key: string;
  username: string;
  password: string;
  /** An OAuth2 refresh token instead of a password (`identitytoken`). */
  identityToken?: string;
}

interface ParsedKey {
  host: string;
  port: string;
  path: string;
}

const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

function parseKey(key: string): ParsedKey | undefined {
  let rest = key.trim().replace(/^[a-z]+:\/\//i, '');
  if (rest === '') return undefined;
  const slash = rest.indexOf('/');
  let path = '';
  if (slash >= 0) {
    path = rest.slice(slash + 1).replace(/\/+$/, '');
    rest = rest.slice(0, slash);
  }
  let host = rest.toLowerCase();
  let port = '';
  const colon = host.lastIndexOf(':');
  if (colon >= 0 && !host.endsWith(']')) {
    port = host.slice(colon + 1);
    host = host.slice(0, colon);
  }
  if (HUB_ALIASES.has(host)) {
    host = DOCKER_HUB;
    // Docker Hub's legacy key is https://index.docker.io/v1/: the path is the API version.
    if (/^v[12]$/.test(path)) path = '';
  }
  return { host, port, path };
}

function hostMatches(pattern: string, host: string): boolean {
  const p = pattern.split('.');
  const h = host.split('.');
  if (p.length !== h.length) return false;
  return p.every((label, i) => {
    if (!label.includes('*')) return label === h[i];
    const re = new RegExp(`^${label.split('*').map(escapeRe).join('[^.]*')}$`);
    return re.test(h[i] ?? '');
  });
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function pathMatches(keyPath: string, repository: string): boolean {
  if (keyPath === '') return true;
  const k = keyPath.split('/');
  const r = repository.split('/');
  return k.length <= r.length && k.every((c, i) => c === r[i]);
}

function entriesOf(data: unknown): [string, unknown][] {
  if (typeof data !== 'object' || data === null) return [];
  const auths = (data as { auths?: unknown }).auths;
  const map = auths !== undefined ? auths : data;
  if (typeof map !== 'object' || map === null) return [];
  return Object.entries(map as Record<string, unknown>);
}

function decodeEntry(entry: unknown): Omit<RegistryCredential, 'secret' | 'key'> | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined;
  const e = entry as Record<string, unknown>;
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  let username = str(e.username) ?? '';
  let password = str(e.password) ?? '';
  const auth = str(e.auth);
  if (auth !== undefined && auth !== '') {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return undefined;
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  const identityToken = str(e.identitytoken);
  if (username === '' && password === '' && !identityToken) return undefined;
  return { username, password, ...(identityToken && { identityToken }) };
}

/** Every credential that applies to the image, the one to try first first. */
export function credentialsFor(
  ref: ImageReference,
  secrets: readonly PullSecret[],
): RegistryCredential[] {
  const image = parseKey(ref.registry);
  if (!image) return [];
  const found: { cred: RegistryCredential; pathLen: number; order: number }[] = [];
  secrets.forEach((secret) => {
    for (const [key, value] of entriesOf(secret.data)) {
      const k = parseKey(key);
      if (!k || k.port !== image.port || !hostMatches(k.host, image.host)) continue;
      if (!pathMatches(k.path, ref.repository)) continue;
      const decoded = decodeEntry(value);
      if (!decoded) continue;
      found.push({
        cred: { secret: secret.name, key, ...decoded },
        pathLen: k.path === '' ? 0 : k.path.split('/').length,
        order: found.length,
      });
    }
  });
  found.sort((a, b) => b.pathLen - a.pathLen || a.order - b.order);
  return found.map((f) => f.cred);
}

/**
 * The containers-auth.json content for one pull: a single entry, keyed by the image's registry,
 * so nothing else the node knows is offered to that registry.
 */
export function authFileContent(ref: ImageReference, cred: RegistryCredential): string {
  const entry: Record<string, string> = {
    auth: Buffer.from(`${cred.username}:${cred.password}`, 'utf8').toString('base64'),
  };
  if (cred.identityToken) entry.identitytoken = cred.identityToken;
  return `${JSON.stringify({ auths: { [ref.registry]: entry } })}\n`;
}

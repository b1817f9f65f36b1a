// imagePullSecrets → the credentials for one pull, and the auth file skopeo reads for it. The
// caller passes each Secret's parsed `.dockerconfigjson` (or legacy `.dockercfg`) content; the
// entry matching the image is chosen as kubelet's keyring does: same number of host labels, each
// matched as a glob (`*`, `?`; never across a dot), same port, the key's path a prefix of the
// repository, the longest path first, then the Secrets' order. Keys are attacker input: bounded in
// length and wildcards, matched without regular expressions (issue 14 row 4). Pure.
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

/**
 * Bounds on a Secret's registry key. Matching is O(pattern × host) per label whatever the input,
 * but a key is attacker input read on every pull: anything longer or wilder than a real registry
 * key is refused when the Secret is decoded (and ignored by the matcher).
 */
export const MAX_REGISTRY_KEY_LENGTH = 512;
export const MAX_REGISTRY_KEY_WILDCARDS = 8;

/** Why a Secret's registry key is not usable, or undefined when it is. Pure. */
export function registryKeyProblem(key: string): string | undefined {
  if (key.length > MAX_REGISTRY_KEY_LENGTH) {
    return `is ${key.length} characters long (at most ${MAX_REGISTRY_KEY_LENGTH})`;
  }
  let wildcards = 0;
  for (const ch of key) if (ch === '*' || ch === '?') wildcards++;
  if (wildcards > MAX_REGISTRY_KEY_WILDCARDS) {
    return `has ${wildcards} wildcards (at most ${MAX_REGISTRY_KEY_WILDCARDS})`;
  }
  if (!parseKey(key)) return 'names no registry host';
  return undefined;
}

function parseKey(key: string): ParsedKey | undefined {
  if (key.length > MAX_REGISTRY_KEY_LENGTH) return undefined;
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
  if (host === '') return undefined;
  if (HUB_ALIASES.has(host)) {
    host = DOCKER_HUB;
    // Docker Hub's legacy key is https://index.docker.io/v1/: the path is the API version.
    if (/^v[12]$/.test(path)) path = '';
  }
  return { host, port, path };
}

/**
 * One host label against one key label: `*` is any run of characters, `?` one character (the
 * label never contains a dot, so neither crosses labels), as kubelet's filepath.Match does for
 * these. Greedy with a single resume point (the last `*`): at most pattern × label steps, never
 * the exponential backtracking of a regular expression.
 */
export function labelMatches(pattern: string, label: string): boolean {
  let p = 0;
  let l = 0;
  let star = -1;
  let resume = 0;
  while (l < label.length) {
    const pc = pattern[p];
    if (pc === '*') {
      star = p++;
      resume = l;
    } else if (pc !== undefined && (pc === '?' || pc === label[l])) {
      p++;
      l++;
    } else if (star >= 0) {
      p = star + 1;
      l = ++resume;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

/** A key's host (labels may hold wildcards) against the image's host: label by label. Pure. */
export function hostMatches(pattern: string, host: string): boolean {
  const p = pattern.split('.');
  const h = host.split('.');
  if (p.length !== h.length) return false;
  return p.every((label, i) => labelMatches(label, h[i] ?? ''));
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

/**
 * The Secret with only its usable registry keys, and one line (naming the Secret's `field`) per
 * key dropped for being over the limits. Called where the Secret is decoded, so the problem
 * reaches the sandbox's Events; credentialsFor skips such keys on its own as well. Pure.
 */
export function withUsableRegistryKeys(
  field: string,
  secret: PullSecret,
): { secret: PullSecret; problems: string[] } {
  const problems: string[] = [];
  const kept: Record<string, unknown> = {};
  for (const [key, value] of entriesOf(secret.data)) {
    const problem = registryKeyProblem(key);
    if (problem === undefined) kept[key] = value;
    else {
      const shown = key.length > 64 ? `${key.slice(0, 64)}…` : key;
      problems.push(
        `${field}: Secret ${JSON.stringify(secret.name)}: registry key ${JSON.stringify(shown)} ${problem}; ignored`,
      );
    }
  }
  if (problems.length === 0) return { secret, problems };
  return { secret: { name: secret.name, data: { auths: kept } }, problems };
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
      if (registryKeyProblem(key) !== undefined) continue;
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

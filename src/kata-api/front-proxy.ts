// Who is calling, as the aggregator says: kube-apiserver authenticates the user, then proxies
// with X-Remote-User/-Group/-Extra-* headers over a TLS connection made with its proxy client
// certificate. Headers count only on a connection whose client certificate chains to the
// request-header CA and (when a list is set) has an allowed common name; anyone else's headers
// are refused, never read. Pure, apart from nothing: the TLS check itself is Node's.
import type { IncomingHttpHeaders } from 'node:http';
import type { UserInfo } from '../observability/metrics-auth.js';

export interface RequestHeaderConfig {
  /** PEM bundle of the request-header (front-proxy) CA. */
  caPem: string;
  /** Common names the proxy's certificate may have; empty: any the CA signed. */
  allowedNames: string[];
  usernameHeaders: string[];
  groupHeaders: string[];
  extraHeaderPrefixes: string[];
}

const list = (raw: string | undefined): string[] => {
  if (!raw) return [];
  const v: unknown = JSON.parse(raw);
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
};

/** From kube-system/extension-apiserver-authentication, which kube-apiserver publishes. */
export function requestHeaderConfigFromConfigMap(
  data: Record<string, string> | undefined,
): RequestHeaderConfig {
  const caPem = data?.['requestheader-client-ca-file'];
  if (!caPem) {
    throw new Error(
      'kube-system/extension-apiserver-authentication has no requestheader-client-ca-file: ' +
        'the API server runs without --requestheader-client-ca-file (no aggregation layer)',
    );
  }
  return {
    caPem,
    allowedNames: list(data['requestheader-allowed-names']),
    usernameHeaders: list(data['requestheader-username-headers']),
    groupHeaders: list(data['requestheader-group-headers']),
    extraHeaderPrefixes: list(data['requestheader-extra-headers-prefix']),
  };
}

export interface PeerCertificateFacts {
  /** The TLS layer verified the chain against the request-header CA. */
  authorized: boolean;
  commonName?: string;
}

/** Why the connection may not speak for a user; undefined when it may. Pure. */
export function proxyCertificateProblem(
  peer: PeerCertificateFacts,
  cfg: RequestHeaderConfig,
): string | undefined {
  if (!peer.authorized) return 'no client certificate signed by the request-header CA';
  if (cfg.allowedNames.length > 0 && !cfg.allowedNames.includes(peer.commonName ?? '')) {
    return `client certificate ${JSON.stringify(peer.commonName ?? '')} is not an allowed front proxy`;
  }
  return undefined;
}

const values = (headers: IncomingHttpHeaders, name: string): string[] => {
  const v = headers[name.toLowerCase()];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v])
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter(Boolean);
};

/** The user the proxy vouches for; undefined when it names none. Pure. */
export function userFromHeaders(
  headers: IncomingHttpHeaders,
  cfg: RequestHeaderConfig,
): UserInfo | undefined {
  const username = cfg.usernameHeaders.map((h) => values(headers, h)[0]).find(Boolean);
  if (!username) return undefined;
  const groups = cfg.groupHeaders.flatMap((h) => values(headers, h));
  const extra: Record<string, string[]> = {};
  for (const prefix of cfg.extraHeaderPrefixes) {
    const p = prefix.toLowerCase();
    for (const [name, v] of Object.entries(headers)) {
      if (!name.startsWith(p) || v === undefined) continue;
      // Keys are percent-encoded in header names (RFC 7230 tokens), lower-cased by Node.
      const key = decodeURIComponent(name.slice(p.length));
      extra[key] = [...(extra[key] ?? []), ...(Array.isArray(v) ? v : [v])];
    }
  }
  return {
    username,
    ...(groups.length > 0 && { groups }),
    ...(Object.keys(extra).length > 0 && { extra }),
  };
}

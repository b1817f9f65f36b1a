// The paths kata-api serves under /apis/subresources.kata.sandbox.io/v1alpha1. Pure.
import { SUBRESOURCE_PREFIX, SUBRESOURCES, type Subresource } from '../subresources/contract.js';

export type ApiPath =
  | { kind: 'discovery' }
  | { kind: 'subresource'; namespace: string; name: string; subresource: Subresource }
  | { kind: 'unknown' };

const SANDBOX =
  /^\/namespaces\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/katasandboxes\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)\/([a-z]+)$/;

export function parseApiPath(pathname: string): ApiPath {
  if (pathname === SUBRESOURCE_PREFIX || pathname === `${SUBRESOURCE_PREFIX}/`) {
    return { kind: 'discovery' };
  }
  if (!pathname.startsWith(`${SUBRESOURCE_PREFIX}/`)) return { kind: 'unknown' };
  const m = SANDBOX.exec(pathname.slice(SUBRESOURCE_PREFIX.length));
  const sub = m?.[5];
  if (!m || !(SUBRESOURCES as readonly string[]).includes(sub ?? '')) return { kind: 'unknown' };
  const namespace = m[1] ?? '';
  const name = m[3] ?? '';
  if (namespace.length > 63 || name.length > 253) return { kind: 'unknown' };
  return { kind: 'subresource', namespace, name, subresource: sub as Subresource };
}

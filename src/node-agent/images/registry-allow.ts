// The node's optional registry allow-list (--allowed-registries; issue 14 row 16): the image's
// registry is chosen by whoever writes the spec, so without a list the node makes HTTPS requests
// wherever it is told. Entries are host[:port] with glob labels (`*.example.com`), matched as
// registry keys are (registry-auth.ts): label by label, the port equal (none means none). An
// empty list allows every registry. Pure.
import { type ImageReference, DOCKER_HUB } from './reference.js';
import { hostMatches } from './registry-auth.js';

const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const ENTRY = /^(?:[A-Za-z0-9*?-]+(?:\.[A-Za-z0-9*?-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$/;

/** Whether `entry` is a valid allow-list entry (host[:port], `*`/`?` inside host labels). */
export function isAllowedRegistryEntry(entry: string): boolean {
  return entry.length <= 255 && ENTRY.test(entry);
}

function split(hostPort: string): { host: string; port: string } {
  const s = hostPort.toLowerCase();
  const colon = s.lastIndexOf(':');
  if (colon < 0 || s.endsWith(']')) return { host: s, port: '' };
  return { host: s.slice(0, colon), port: s.slice(colon + 1) };
}

/** Whether the image's registry is on the list (always, when the list is empty). */
export function registryAllowed(registry: string, allowed: readonly string[]): boolean {
  if (allowed.length === 0) return true;
  const image = split(registry);
  return allowed.some((entry) => {
    const e = split(entry.trim());
    const host = HUB_ALIASES.has(e.host) ? DOCKER_HUB : e.host;
    return e.port === image.port && hostMatches(host, image.host);
  });
}

/** The refusal message for an image whose registry is not on the list. */
export function registryNotAllowedMessage(
  field: string,
  ref: ImageReference,
  allowed: readonly string[],
): string {
  return `${field}: registry ${JSON.stringify(ref.registry)} is not in this node's allowed registries (${allowed.join(', ')})`;
}

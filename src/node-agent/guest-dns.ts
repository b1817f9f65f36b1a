// The guest's DNS: spec.dns, else the node's resolv.conf (nameservers and search domains).
import { readFile } from 'node:fs/promises';
import type { SandboxDns } from '../agent/agent-requests.js';
import type { DnsSpec } from '../crds/index.js';

/** nameserver (at most 3) and search lines of a resolv.conf. Pure. */
export function parseResolvConf(text: string): SandboxDns {
  const nameservers: string[] = [];
  let searches: string[] = [];
  for (const raw of text.split('\n')) {
    const [key, ...rest] = raw
      .replace(/[#;].*$/, '')
      .trim()
      .split(/\s+/);
    if (key === 'nameserver' && rest[0] && nameservers.length < 3) nameservers.push(rest[0]);
    if (key === 'search' || key === 'domain') searches = rest.filter(Boolean);
  }
  return { nameservers, searches };
}

export async function sandboxDns(
  spec: DnsSpec | undefined,
  resolvConf = '/etc/resolv.conf',
): Promise<SandboxDns> {
  if (spec && ((spec.nameservers?.length ?? 0) > 0 || (spec.searches?.length ?? 0) > 0)) {
    return { nameservers: spec.nameservers ?? [], searches: spec.searches ?? [] };
  }
  const text = await readFile(resolvConf, 'utf8').catch(() => '');
  return parseResolvConf(text);
}

import type { CreateSandboxRequest, Storage } from '../generated/agent.js';

// The guest's UTS name is at most 64 bytes; the seed cut longer names rather than fail.
const MAX_HOSTNAME = 64;

export function guestHostname(hostname: string): string {
  return hostname.slice(0, MAX_HOSTNAME);
}

export interface SandboxDns {
  nameservers: string[];
  searches: string[];
}

/** resolv.conf lines, as the agent protocol carries DNS. */
export function dnsLines(dns: SandboxDns): string[] {
  const lines = dns.nameservers.map((ns) => `nameserver ${ns}`);
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(' ')}`);
  return lines;
}

export function createSandboxRequest(opts: {
  sandboxId: string;
  hostname: string;
  dns: SandboxDns;
  storages: Storage[];
}): CreateSandboxRequest {
  return {
    hostname: guestHostname(opts.hostname),
    dns: dnsLines(opts.dns),
    storages: opts.storages,
    sandboxPidns: false,
    sandboxId: opts.sandboxId,
    guestHookPath: '',
    kernelModules: [],
  };
}

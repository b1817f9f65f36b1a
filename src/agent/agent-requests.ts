// The host's requests to the agent in its own terms (SandboxSetup, ContainerSetup), and the wire
// requests built from them: the fields the protocol carries that the host never varies (no shared
// pid namespace, no port-based stdio, no shared mounts) are filled here, once.
import type {
  CreateContainerRequest,
  CreateSandboxRequest,
  Device,
  Storage,
  StringUser,
} from '../generated/agent.js';
import type { Spec } from '../generated/oci.js';

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

export interface SandboxSetup {
  sandboxId: string;
  hostname: string;
  dns: SandboxDns;
  storages: Storage[];
}

export function createSandboxRequest(s: SandboxSetup): CreateSandboxRequest {
  return {
    hostname: guestHostname(s.hostname),
    dns: dnsLines(s.dns),
    storages: s.storages,
    sandboxPidns: false,
    sandboxId: s.sandboxId,
    guestHookPath: '',
    kernelModules: [],
  };
}

export interface ContainerSetup {
  containerId: string;
  /** The OCI spec, already constrained to what the guest accepts (oci-constraints.ts). */
  oci: Spec;
  /** The user by name, resolved in the guest against the rootfs's /etc/passwd and /etc/group. */
  stringUser?: StringUser | undefined;
  devices?: Device[];
  storages?: Storage[];
}

/** The container's init process has the container's id as its exec id. */
export function createContainerRequest(s: ContainerSetup): CreateContainerRequest {
  return {
    containerId: s.containerId,
    execId: s.containerId,
    ...(s.stringUser && { stringUser: s.stringUser }),
    devices: s.devices ?? [],
    storages: s.storages ?? [],
    OCI: s.oci,
    sandboxPidns: false,
    agentPidns: false,
  };
}

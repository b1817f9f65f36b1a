// Reads a network namespace's links, addresses and routes with iproute2's JSON output, run inside
// the namespace (`nsenter --net=<path> ip -d -j addr show`), and parses it into the
// NetnsDescription that guestNetworkConfig turns into the agent's interfaces and routes.
import type { NetnsDescription, NetnsLink, NetnsRoute } from './netns-description.js';
import { inNetns, runCommand, runOk, type Runner } from './exec.js';

// rtnetlink scope numbers (rtnetlink.h), by the names ip prints.
const SCOPES: Record<string, number> = {
  global: 0,
  universe: 0,
  site: 200,
  link: 253,
  host: 254,
  nowhere: 255,
};

interface RawAddr {
  family?: string;
  local?: string;
  prefixlen?: number;
  scope?: string;
}
interface RawLink {
  ifname?: string;
  mtu?: number;
  address?: string;
  link_type?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: RawAddr[];
}
interface RawRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
  prefsrc?: string;
  scope?: string;
  protocol?: string;
  type?: string;
}

const parseArray = <T>(json: string, what: string): T[] => {
  let v: unknown;
  try {
    v = JSON.parse(json.trim() === '' ? '[]' : json);
  } catch (e) {
    throw new Error(`${what}: not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(v)) throw new Error(`${what}: expected a JSON array`);
  return v as T[];
};

/** IFF_* bits for the flag names ip prints (if.h), so rawFlags carries what the kernel reported. */
const IFF: Record<string, number> = {
  UP: 0x1,
  BROADCAST: 0x2,
  DEBUG: 0x4,
  LOOPBACK: 0x8,
  POINTOPOINT: 0x10,
  NOTRAILERS: 0x20,
  RUNNING: 0x40,
  NOARP: 0x80,
  PROMISC: 0x100,
  ALLMULTI: 0x200,
  MULTICAST: 0x1000,
};

/**
 * Parses `ip -d -j addr show`. The link type is the kernel's kind (`veth`, `tap`, `bridge`...) when
 * `-d` reported one, else ip's link_type (`loopback`, `ether`). IPv6 link-local addresses are the
 * kernel's own and are dropped; other IPv6 addresses are kept so the caller can warn about them.
 */
export function parseNetnsLinks(json: string): NetnsLink[] {
  return parseArray<RawLink>(json, 'ip -j addr').map((l) => ({
    name: l.ifname ?? '',
    mtu: l.mtu ?? 0,
    hwAddr: (l.address ?? '').toLowerCase(),
    type: l.linkinfo?.info_kind ?? l.link_type ?? '',
    rawFlags: (l.flags ?? []).reduce((acc, f) => acc | (IFF[f] ?? 0), 0),
    addresses: (l.addr_info ?? [])
      .filter((a) => a.local !== undefined && (a.family === 'inet' || a.family === 'inet6'))
      .filter((a) => !(a.family === 'inet6' && a.scope === 'link'))
      .map((a) => ({
        address: a.local!,
        prefixLength: a.prefixlen ?? (a.family === 'inet' ? 32 : 128),
      })),
  }));
}

/**
 * Parses `ip -j -4 route show` or `ip -j -6 route show` (main table). Only unicast routes with a
 * device; IPv6 routes the kernel made (for addresses and fe80::/64) are dropped, since their
 * addresses are already reported.
 */
export function parseNetnsRoutes(json: string, family: 4 | 6 = 4): NetnsRoute[] {
  return parseArray<RawRoute>(json, 'ip -j route')
    .filter((r) => (r.type ?? 'unicast') === 'unicast' && r.dev)
    .filter((r) => !(family === 6 && r.protocol === 'kernel'))
    .map((r) => ({
      dest: r.dst === undefined || r.dst === 'default' ? 'default' : r.dst,
      ...(r.gateway !== undefined && { gateway: r.gateway }),
      ...(r.prefsrc !== undefined && { source: r.prefsrc }),
      device: r.dev ?? '',
      scope: r.scope === undefined ? 0 : (SCOPES[r.scope] ?? 0),
    }));
}

/** The three `ip` argv lists a namespace is read with (before the nsenter prefix). */
export const READ_ARGV = {
  addr: ['ip', '-d', '-j', 'addr', 'show'],
  route4: ['ip', '-j', '-4', 'route', 'show'],
  route6: ['ip', '-j', '-6', 'route', 'show'],
} as const;

export interface ReadNetnsOptions {
  run?: Runner;
  timeoutMs?: number;
}

/** Reads the namespace at nsPath (nsenter, so any bind-mounted namespace works, not only named ones). */
export async function readNetns(
  nsPath: string,
  opts: ReadNetnsOptions = {},
): Promise<NetnsDescription> {
  const run = opts.run ?? runCommand;
  const o = { timeoutMs: opts.timeoutMs ?? 10_000 };
  const [addr, r4, r6] = await Promise.all([
    runOk(run, inNetns(nsPath, READ_ARGV.addr), o),
    runOk(run, inNetns(nsPath, READ_ARGV.route4), o),
    runOk(run, inNetns(nsPath, READ_ARGV.route6), o),
  ]);
  return {
    links: parseNetnsLinks(addr),
    routes: [...parseNetnsRoutes(r4, 4), ...parseNetnsRoutes(r6, 6)],
  };
}

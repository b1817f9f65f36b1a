// Interfaces and routes inside the guest, applied with iproute2's `ip` (the image ships it for its
// JSON output). Parsing and argv building are pure; `GuestNetwork` runs them.
import { isIPv4 } from 'node:net';
import { runCommandOk, type CommandRunner } from '../../common/run-command.js';
import { IPFamily, type ARPNeighbor, type Interface, type Route } from '../../generated/types.js';
import { arpNeighborArgs } from './arp-neighbors.js';
import { invalidArgument, notFound } from './status-error.js';

const IP_TIMEOUT_MS = 10_000;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** One link as `ip -j addr show` reports it (the fields used here). */
export interface IpLink {
  ifname: string;
  mtu: number;
  address: string;
  linkType: string;
  flags: string[];
  addresses: { address: string; prefixLength: number }[];
}

export interface IpRoute {
  route: Route;
  /** "kernel" for the routes the kernel made for an address; those are left alone. */
  protocol: string;
}

// rtnetlink scope numbers (rtnetlink.h) and the names ip prints.
const SCOPES: Record<string, number> = {
  global: 0,
  universe: 0,
  site: 200,
  link: 253,
  host: 254,
  nowhere: 255,
};
const SCOPE_NAMES = new Map<number, string>([
  [200, 'site'],
  [253, 'link'],
  [254, 'host'],
  [255, 'nowhere'],
]);

interface RawAddrInfo {
  family?: string;
  local?: string;
  prefixlen?: number;
}
interface RawLink {
  ifname?: string;
  mtu?: number;
  address?: string;
  link_type?: string;
  flags?: string[];
  addr_info?: RawAddrInfo[];
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
  const v: unknown = JSON.parse(json.trim() === '' ? '[]' : json);
  if (!Array.isArray(v)) throw new Error(`${what}: expected a JSON array`);
  return v as T[];
};

/** Parses `ip -j addr show`. */
export function parseIpAddr(json: string): IpLink[] {
  return parseArray<RawLink>(json, 'ip -j addr').map((l) => ({
    ifname: l.ifname ?? '',
    mtu: l.mtu ?? 0,
    address: (l.address ?? '').toLowerCase(),
    linkType: l.link_type ?? '',
    flags: l.flags ?? [],
    addresses: (l.addr_info ?? [])
      .filter((a) => a.family === 'inet' && a.local !== undefined)
      .map((a) => ({ address: a.local!, prefixLength: a.prefixlen ?? 32 })),
  }));
}

/** Parses `ip -j -4 route show`. */
export function parseIpRoutes(json: string): IpRoute[] {
  return parseArray<RawRoute>(json, 'ip -j route')
    .filter((r) => (r.type ?? 'unicast') === 'unicast' && r.dev)
    .map((r) => ({
      protocol: r.protocol ?? 'boot',
      route: {
        dest: r.dst === undefined || r.dst === 'default' ? '' : r.dst,
        gateway: r.gateway ?? '',
        device: r.dev ?? '',
        source: r.prefsrc ?? '',
        scope: r.scope === undefined ? 0 : (SCOPES[r.scope] ?? 0),
        family: IPFamily.v4,
        flags: 0,
        mtu: 0,
      },
    }));
}

/** The protocol's view of a link: IPv4 addresses with the prefix length as the mask. */
export function toInterface(l: IpLink): Interface {
  return {
    device: l.ifname,
    name: l.ifname,
    IPAddresses: l.addresses.map((a) => ({
      family: IPFamily.v4,
      address: a.address,
      mask: String(a.prefixLength),
    })),
    mtu: l.mtu,
    hwAddr: l.address,
    pciPath: '',
    type: l.linkType === 'ether' ? '' : l.linkType,
    rawFlags: 0,
  };
}

const prefixLength = (mask: string): number | undefined =>
  /^\d{1,2}$/.test(mask) && Number(mask) <= 32 ? Number(mask) : undefined;

export function validateInterface(i: Interface | undefined, field = 'interface'): Interface {
  if (!i) throw invalidArgument(`${field} is missing`);
  if (!MAC_RE.test(i.hwAddr.toLowerCase())) {
    throw invalidArgument(`${field}.hwAddr ${JSON.stringify(i.hwAddr)} is not a MAC address`);
  }
  if (!IFNAME_RE.test(i.name)) {
    throw invalidArgument(`${field}.name ${JSON.stringify(i.name)} is not an interface name`);
  }
  if (i.mtu !== 0 && (i.mtu < 68 || i.mtu > 65535)) {
    throw invalidArgument(`${field}.mtu ${i.mtu} is out of range (68-65535)`);
  }
  i.IPAddresses.forEach((a, n) => {
    const f = `${field}.IPAddresses[${n}]`;
    if (a.family !== IPFamily.v4 || !isIPv4(a.address)) {
      throw invalidArgument(`${f} ${JSON.stringify(a.address)} is not an IPv4 address`);
    }
    if (prefixLength(a.mask) === undefined) {
      throw invalidArgument(`${f}.mask ${JSON.stringify(a.mask)} is not a prefix length`);
    }
  });
  return i;
}

/** ip argv lists that make `current` look like `want`: down, rename, MTU, addresses, up. */
export function updateInterfaceCommands(current: IpLink, want: Interface): string[][] {
  const cmds: string[][] = [['link', 'set', 'dev', current.ifname, 'down']];
  const name = want.name;
  if (name !== current.ifname) cmds.push(['link', 'set', 'dev', current.ifname, 'name', name]);
  if (want.mtu !== 0 && want.mtu !== current.mtu) {
    cmds.push(['link', 'set', 'dev', name, 'mtu', String(want.mtu)]);
  }
  cmds.push(['-4', 'addr', 'flush', 'dev', name]);
  for (const a of want.IPAddresses) {
    cmds.push(['addr', 'add', `${a.address}/${prefixLength(a.mask)}`, 'dev', name]);
  }
  cmds.push(['link', 'set', 'dev', name, 'up']);
  return cmds;
}

const isCidr = (s: string): boolean => {
  const [addr, len, ...rest] = s.split('/');
  return (
    rest.length === 0 &&
    isIPv4(addr ?? '') &&
    (len === undefined || prefixLength(len) !== undefined)
  );
};

export function validateRoute(r: Route, field: string): Route {
  if (r.family !== IPFamily.v4) throw invalidArgument(`${field}.family: only IPv4 is supported`);
  if (r.dest !== '' && r.dest !== 'default' && !isCidr(r.dest)) {
    throw invalidArgument(`${field}.dest ${JSON.stringify(r.dest)} is not an IPv4 CIDR`);
  }
  if (r.gateway !== '' && !isIPv4(r.gateway)) {
    throw invalidArgument(`${field}.gateway ${JSON.stringify(r.gateway)} is not an IPv4 address`);
  }
  if (r.source !== '' && !isIPv4(r.source)) {
    throw invalidArgument(`${field}.source ${JSON.stringify(r.source)} is not an IPv4 address`);
  }
  if (!IFNAME_RE.test(r.device)) {
    throw invalidArgument(`${field}.device ${JSON.stringify(r.device)} is not an interface name`);
  }
  if (r.scope !== 0 && !SCOPE_NAMES.has(r.scope)) {
    throw invalidArgument(`${field}.scope ${r.scope} is not a route scope`);
  }
  return r;
}

const destOf = (r: Route): string => (r.dest === '' || r.dest === 'default' ? 'default' : r.dest);
const routeKey = (r: Route): string => `${destOf(r)}|${r.gateway}|${r.device}`;

export function routeReplaceArgv(r: Route): string[] {
  const scope = SCOPE_NAMES.get(r.scope);
  return [
    '-4',
    'route',
    'replace',
    destOf(r),
    ...(r.gateway ? ['via', r.gateway] : []),
    'dev',
    r.device,
    ...(r.source ? ['src', r.source] : []),
    ...(scope ? ['scope', scope] : []),
  ];
}

export function routeDeleteArgv(r: Route): string[] {
  return [
    '-4',
    'route',
    'del',
    destOf(r),
    ...(r.gateway ? ['via', r.gateway] : []),
    'dev',
    r.device,
  ];
}

/**
 * The commands that replace the routing table with `want`: stale routes go (except those the
 * kernel made for addresses), then link-scope routes (no gateway) before the routes that need
 * them to reach their gateway.
 */
export function updateRoutesCommands(current: IpRoute[], want: Route[]): string[][] {
  const wanted = new Set(want.map(routeKey));
  const deletes = current
    .filter((c) => c.protocol !== 'kernel' && !wanted.has(routeKey(c.route)))
    .map((c) => routeDeleteArgv(c.route));
  const direct = want.filter((r) => !r.gateway).map(routeReplaceArgv);
  const viaGateway = want.filter((r) => r.gateway).map(routeReplaceArgv);
  return [...deletes, ...direct, ...viaGateway];
}

export class GuestNetwork {
  private readonly run: CommandRunner;

  constructor(opts: { run?: CommandRunner; ipBin?: string } = {}) {
    this.run = opts.run ?? runCommandOk;
    this.ipBin = opts.ipBin ?? 'ip';
  }

  private readonly ipBin: string;

  private async ip(args: string[]): Promise<{ stdout: string }> {
    const r = await this.run([this.ipBin, ...args], { timeoutMs: IP_TIMEOUT_MS });
    return { stdout: r.stdout.toString('utf8') };
  }

  async links(): Promise<IpLink[]> {
    return parseIpAddr((await this.ip(['-j', 'addr', 'show'])).stdout);
  }

  async listInterfaces(): Promise<Interface[]> {
    return (await this.links()).map(toInterface);
  }

  async listRoutes(): Promise<Route[]> {
    return (await this.routes()).map((r) => r.route);
  }

  /** Finds the link by MAC, renames it, sets MTU and IPv4 addresses, brings it up. */
  async updateInterface(want: Interface): Promise<Interface> {
    validateInterface(want);
    const mac = want.hwAddr.toLowerCase();
    const current = (await this.links()).find((l) => l.address === mac);
    if (!current) throw notFound(`interface.hwAddr ${JSON.stringify(want.hwAddr)}: no such link`);
    for (const cmd of updateInterfaceCommands(current, want)) await this.ip(cmd);
    const now = (await this.links()).find((l) => l.address === mac);
    if (!now) throw notFound(`interface.hwAddr ${JSON.stringify(want.hwAddr)}: link vanished`);
    return toInterface(now);
  }

  /** Adds each neighbour in order; the first that fails ends the call (as in Kata 1.x). */
  async addArpNeighbors(neighbors: ARPNeighbor[]): Promise<void> {
    const argvs = neighbors.map((n, i) => arpNeighborArgs(n, `neighbors[${i}]`));
    for (const args of argvs) await this.ip(args);
  }

  async updateRoutes(want: Route[]): Promise<Route[]> {
    want.forEach((r, i) => validateRoute(r, `routes[${i}]`));
    for (const cmd of updateRoutesCommands(await this.routes(), want)) await this.ip(cmd);
    return this.listRoutes();
  }

  private async routes(): Promise<IpRoute[]> {
    return parseIpRoutes((await this.ip(['-j', '-4', 'route', 'show'])).stdout);
  }
}

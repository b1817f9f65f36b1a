// AddARPNeighbors as Kata 1.x does it (a netlink neighbour add per entry, failing on the first
// that fails), with iproute2: `ip neigh add <ip> dev <dev> [lladdr <mac>] [nud <state>] [router]`.
import { isIP } from 'node:net';
import type { ARPNeighbor } from '../../generated/types.js';
import { invalidArgument } from './status-error.js';

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
// NUD_* states (neighbour.h) and the names ip takes.
const NUD_NAMES = new Map<number, string>([
  [0x01, 'incomplete'],
  [0x02, 'reachable'],
  [0x04, 'stale'],
  [0x08, 'delay'],
  [0x10, 'probe'],
  [0x20, 'failed'],
  [0x40, 'noarp'],
  [0x80, 'permanent'],
]);
const NTF_ROUTER = 0x80;

/** The `ip` arguments for one neighbour; messages name the field (neighbors[0].device). */
export function arpNeighborArgs(n: ARPNeighbor, field: string): string[] {
  if (!IFNAME_RE.test(n.device)) {
    throw invalidArgument(`${field}.device ${JSON.stringify(n.device)} is not an interface name`);
  }
  const ip = n.toIPAddress?.address ?? '';
  if (isIP(ip) === 0) {
    throw invalidArgument(`${field}.toIPAddress ${JSON.stringify(ip)} is not an IP address`);
  }
  const mac = n.lladdr.toLowerCase();
  if (mac !== '' && !MAC_RE.test(mac)) {
    throw invalidArgument(`${field}.lladdr ${JSON.stringify(n.lladdr)} is not a MAC address`);
  }
  const nud = n.state === 0 ? undefined : NUD_NAMES.get(n.state);
  if (n.state !== 0 && !nud) {
    throw invalidArgument(`${field}.state ${n.state} is not one neighbour state`);
  }
  if ((n.flags & ~NTF_ROUTER) !== 0) {
    throw invalidArgument(`${field}.flags ${n.flags}: only NTF_ROUTER (0x80) is supported`);
  }
  return [
    'neigh',
    'add',
    ip,
    'dev',
    n.device,
    ...(mac ? ['lladdr', mac] : []),
    ...(nud ? ['nud', nud] : []),
    ...(n.flags & NTF_ROUTER ? ['router'] : []),
  ];
}

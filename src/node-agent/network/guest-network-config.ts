// The guest's interfaces and routes from a namespace the node agent read: pure, so the rules
// (loopback is the guest's own, IPv4 only) are unit-tested without a namespace.
import { isIPv4, isIPv6 } from 'node:net';
import { IPFamily, type Interface, type Route } from '../../generated/types.js';
import type { NetnsDescription } from './netns-description.js';

/** Something of the namespace the guest does not get, named for the NetworkWarning Event. */
export interface NetworkWarning {
  message: string;
  interface: string;
  address?: string;
}

export interface GuestNetworkConfig {
  interfaces: Interface[];
  routes: Route[];
  warnings: NetworkWarning[];
}

const isLoopbackAddress = (a: string): boolean =>
  (isIPv4(a) && a.startsWith('127.')) || a === '::1';
const stripPrefix = (cidr: string): string => cidr.split('/')[0] ?? cidr;

/**
 * The interfaces and routes the guest should get, following the seed's rules: the loopback link
 * and loopback addresses are the guest's own business, and IPv6 is skipped (with a warning) since
 * the guest side only handles IPv4; an interface keeps coming up with its IPv4 addresses only.
 */
export function guestNetworkConfig(ns: NetnsDescription): GuestNetworkConfig {
  const warnings: NetworkWarning[] = [];
  const interfaces: Interface[] = [];
  const sent = new Set<string>();

  for (const link of ns.links) {
    if (link.type === 'loopback' || link.name === 'lo') continue;
    const addresses = [];
    for (const a of link.addresses) {
      if (isLoopbackAddress(a.address)) continue;
      if (!isIPv4(a.address)) {
        warnings.push({
          message: 'IPv6 address skipped: the guest network supports IPv4 only',
          interface: link.name,
          address: `${a.address}/${a.prefixLength}`,
        });
        continue;
      }
      addresses.push({ family: IPFamily.v4, address: a.address, mask: String(a.prefixLength) });
    }
    interfaces.push({
      device: link.name,
      name: link.name,
      IPAddresses: addresses,
      mtu: link.mtu,
      hwAddr: link.hwAddr,
      pciPath: '',
      type: link.type,
      rawFlags: link.rawFlags ?? 0,
    });
    sent.add(link.name);
  }

  const routes: Route[] = [];
  for (const r of ns.routes) {
    if (!sent.has(r.device)) continue;
    const dest = r.dest === 'default' ? '' : (r.dest ?? '');
    const v6 = [dest, r.gateway, r.source].find((a) => a && isIPv6(stripPrefix(a)));
    if (v6) {
      warnings.push({
        message: 'IPv6 route skipped: the guest network supports IPv4 only',
        interface: r.device,
        address: v6,
      });
      continue;
    }
    routes.push({
      dest,
      gateway: r.gateway ?? '',
      device: r.device,
      source: r.source ?? '',
      scope: r.scope ?? 0,
      family: IPFamily.v4,
      flags: 0,
      mtu: 0,
    });
  }
  return { interfaces, routes, warnings };
}

import { describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import {
  GuestNetwork,
  parseIpAddr,
  parseIpRoutes,
  routeReplaceArgv,
  toInterface,
  updateInterfaceCommands,
  updateRoutesCommands,
  validateInterface,
  validateRoute,
} from '../../../src/agent/guest/network.js';
import type { CommandRunner } from '../../../src/common/run-command.js';
import { IPFamily, type Interface, type Route } from '../../../src/generated/types.js';
import { ran } from './ran.js';

// As iproute2 6.1 prints them (`ip -j addr show`, `ip -j -4 route show`).
const IP_ADDR = JSON.stringify([
  {
    ifindex: 1,
    ifname: 'lo',
    flags: ['LOOPBACK', 'UP', 'LOWER_UP'],
    mtu: 65536,
    link_type: 'loopback',
    address: '00:00:00:00:00:00',
    addr_info: [
      { family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host', label: 'lo' },
      { family: 'inet6', local: '::1', prefixlen: 128, scope: 'host' },
    ],
  },
  {
    ifindex: 2,
    ifname: 'eth0',
    flags: ['BROADCAST', 'MULTICAST'],
    mtu: 1500,
    link_type: 'ether',
    address: '52:54:00:AB:CD:EF',
    addr_info: [],
  },
]);

const IP_ROUTE = JSON.stringify([
  { dst: 'default', gateway: '10.0.0.1', dev: 'eth0', flags: [] },
  {
    dst: '10.0.0.0/24',
    dev: 'eth0',
    protocol: 'kernel',
    scope: 'link',
    prefsrc: '10.0.0.5',
    flags: [],
  },
  { dst: '192.168.9.0/24', gateway: '10.0.0.9', dev: 'eth0', flags: [] },
  { type: 'broadcast', dst: '10.0.0.255', dev: 'eth0', flags: [] },
]);

const route = (r: Partial<Route>): Route => ({
  dest: '',
  gateway: '',
  device: 'eth0',
  source: '',
  scope: 0,
  family: IPFamily.v4,
  flags: 0,
  mtu: 0,
  ...r,
});

const want: Interface = {
  device: 'eth0',
  name: 'eth1',
  IPAddresses: [
    { family: IPFamily.v4, address: '10.0.0.5', mask: '24' },
    { family: IPFamily.v4, address: '10.0.1.5', mask: '32' },
  ],
  mtu: 1450,
  hwAddr: '52:54:00:ab:cd:ef',
  pciPath: '',
  type: '',
  rawFlags: 0,
};

describe('parsers', () => {
  it('parses links with IPv4 addresses only, MACs lowercased', () => {
    const links = parseIpAddr(IP_ADDR);
    expect(links).toEqual([
      {
        ifname: 'lo',
        mtu: 65536,
        address: '00:00:00:00:00:00',
        linkType: 'loopback',
        flags: ['LOOPBACK', 'UP', 'LOWER_UP'],
        addresses: [{ address: '127.0.0.1', prefixLength: 8 }],
      },
      {
        ifname: 'eth0',
        mtu: 1500,
        address: '52:54:00:ab:cd:ef',
        linkType: 'ether',
        flags: ['BROADCAST', 'MULTICAST'],
        addresses: [],
      },
    ]);
    expect(toInterface(links[0]!)).toMatchObject({
      name: 'lo',
      IPAddresses: [{ family: IPFamily.v4, address: '127.0.0.1', mask: '8' }],
      type: 'loopback',
    });
    expect(parseIpAddr('')).toEqual([]);
  });

  it('parses unicast routes: default as empty dest, scope names as numbers', () => {
    expect(parseIpRoutes(IP_ROUTE)).toEqual([
      { protocol: 'boot', route: route({ gateway: '10.0.0.1' }) },
      {
        protocol: 'kernel',
        route: route({ dest: '10.0.0.0/24', source: '10.0.0.5', scope: 253 }),
      },
      { protocol: 'boot', route: route({ dest: '192.168.9.0/24', gateway: '10.0.0.9' }) },
    ]);
  });
});

describe('argv builders', () => {
  it('UpdateInterface: down, rename, MTU, flush, addresses, up', () => {
    const [, eth0] = parseIpAddr(IP_ADDR);
    expect(updateInterfaceCommands(eth0!, want)).toEqual([
      ['link', 'set', 'dev', 'eth0', 'down'],
      ['link', 'set', 'dev', 'eth0', 'name', 'eth1'],
      ['link', 'set', 'dev', 'eth1', 'mtu', '1450'],
      ['-4', 'addr', 'flush', 'dev', 'eth1'],
      ['addr', 'add', '10.0.0.5/24', 'dev', 'eth1'],
      ['addr', 'add', '10.0.1.5/32', 'dev', 'eth1'],
      ['link', 'set', 'dev', 'eth1', 'up'],
    ]);
  });

  it('same name and MTU: no rename or MTU change', () => {
    const [, eth0] = parseIpAddr(IP_ADDR);
    const cmds = updateInterfaceCommands(eth0!, { ...want, name: 'eth0', mtu: 1500 });
    expect(cmds.some((c) => c.includes('name') || c.includes('mtu'))).toBe(false);
  });

  it('route argv: gateway, source and scope when set', () => {
    expect(routeReplaceArgv(route({ gateway: '10.0.0.1' }))).toEqual([
      '-4',
      'route',
      'replace',
      'default',
      'via',
      '10.0.0.1',
      'dev',
      'eth0',
    ]);
    expect(
      routeReplaceArgv(route({ dest: '10.0.0.0/24', source: '10.0.0.5', scope: 253 })),
    ).toEqual([
      '-4',
      'route',
      'replace',
      '10.0.0.0/24',
      'dev',
      'eth0',
      'src',
      '10.0.0.5',
      'scope',
      'link',
    ]);
  });

  it('UpdateRoutes: stale non-kernel routes go, then link routes, then gateway routes', () => {
    const current = parseIpRoutes(IP_ROUTE);
    const wanted = [
      route({ gateway: '10.0.0.1' }),
      route({ dest: '10.0.0.0/24', scope: 253 }),
      route({ dest: '172.16.0.0/16', gateway: '10.0.0.1' }),
    ];
    expect(updateRoutesCommands(current, wanted)).toEqual([
      ['-4', 'route', 'del', '192.168.9.0/24', 'via', '10.0.0.9', 'dev', 'eth0'],
      ['-4', 'route', 'replace', '10.0.0.0/24', 'dev', 'eth0', 'scope', 'link'],
      ['-4', 'route', 'replace', 'default', 'via', '10.0.0.1', 'dev', 'eth0'],
      ['-4', 'route', 'replace', '172.16.0.0/16', 'via', '10.0.0.1', 'dev', 'eth0'],
    ]);
  });
});

describe('validation', () => {
  it.each<[string, Partial<Interface>, RegExp]>([
    ['a bad MAC', { hwAddr: 'zz' }, /^interface\.hwAddr/],
    ['a bad name', { name: 'eth0; reboot' }, /^interface\.name/],
    ['a long name', { name: 'x'.repeat(16) }, /^interface\.name/],
    ['a bad MTU', { mtu: 20 }, /^interface\.mtu/],
    [
      'an IPv6 address',
      { IPAddresses: [{ family: IPFamily.v6, address: 'fd00::1', mask: '64' }] },
      /IPAddresses\[0\]/,
    ],
    [
      'a bad mask',
      { IPAddresses: [{ family: IPFamily.v4, address: '10.0.0.1', mask: '33' }] },
      /IPAddresses\[0\]\.mask/,
    ],
  ])('an interface with %s is INVALID_ARGUMENT', (_n, change, msg) => {
    expect(() => validateInterface({ ...want, ...change })).toThrow(msg);
    try {
      validateInterface({ ...want, ...change });
    } catch (err) {
      expect((err as { code: number }).code).toBe(status.INVALID_ARGUMENT);
    }
  });

  it.each<[Partial<Route>, RegExp]>([
    [{ dest: '10.0.0.0/40' }, /routes\[0\]\.dest/],
    [{ dest: 'fd00::/8' }, /routes\[0\]\.dest/],
    [{ gateway: 'gw' }, /routes\[0\]\.gateway/],
    [{ device: '' }, /routes\[0\]\.device/],
    [{ scope: 7 }, /routes\[0\]\.scope/],
    [{ family: IPFamily.v6 }, /routes\[0\]\.family/],
  ])('route %j is refused', (change, msg) => {
    expect(() => validateRoute(route(change), 'routes[0]')).toThrow(msg);
  });
});

describe('GuestNetwork', () => {
  it('UpdateInterface finds the link by MAC and runs the commands; an unknown MAC is NOT_FOUND', async () => {
    const calls: string[][] = [];
    let renamed = false;
    const run: CommandRunner = async (argv) => {
      calls.push([...argv]);
      if (argv.includes('name')) renamed = true;
      const out = renamed ? IP_ADDR.replace('"eth0"', '"eth1"') : IP_ADDR;
      return ran(argv, argv[1] === '-j' ? out : '');
    };
    const net = new GuestNetwork({ run });
    const res = await net.updateInterface({ ...want, hwAddr: '52:54:00:AB:CD:EF' });
    expect(res.name).toBe('eth1');
    expect(calls[0]).toEqual(['ip', '-j', 'addr', 'show']);
    expect(calls).toContainEqual(['ip', 'link', 'set', 'dev', 'eth1', 'up']);
    await expect(
      net.updateInterface({ ...want, hwAddr: '02:00:00:00:00:01' }),
    ).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('ListRoutes and ListInterfaces report what ip shows', async () => {
    const run: CommandRunner = async (argv) =>
      ran(argv, argv.includes('route') ? IP_ROUTE : IP_ADDR);
    const net = new GuestNetwork({ run });
    expect((await net.listRoutes()).map((r) => r.dest)).toEqual([
      '',
      '10.0.0.0/24',
      '192.168.9.0/24',
    ]);
    expect((await net.listInterfaces()).map((i) => i.name)).toEqual(['lo', 'eth0']);
  });
});

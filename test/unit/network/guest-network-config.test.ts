import { describe, expect, it } from '@jest/globals';
import type { NetnsLink } from '../../../src/node-agent/network/netns-description.js';
import { guestNetworkConfig } from '../../../src/node-agent/network/guest-network-config.js';
import { IPFamily } from '../../../src/generated/types.js';

const veth = (over: Partial<NetnsLink> = {}): NetnsLink => ({
  name: 'eth0',
  mtu: 1500,
  hwAddr: '02:42:ac:11:00:02',
  type: 'veth',
  rawFlags: 4099,
  addresses: [{ address: '10.1.0.5', prefixLength: 24 }],
  ...over,
});

const lo: NetnsLink = {
  name: 'lo',
  mtu: 65536,
  hwAddr: '00:00:00:00:00:00',
  type: 'loopback',
  addresses: [
    { address: '127.0.0.1', prefixLength: 8 },
    { address: '::1', prefixLength: 128 },
  ],
};

describe('guestNetworkConfig', () => {
  it('turns a CNI-style namespace into agent interfaces and routes', () => {
    const cfg = guestNetworkConfig({
      links: [lo, veth()],
      routes: [
        { dest: 'default', gateway: '10.1.0.1', device: 'eth0' },
        { dest: '10.1.0.0/24', source: '10.1.0.5', device: 'eth0', scope: 253 },
      ],
    });
    expect(cfg.warnings).toEqual([]);
    expect(cfg.interfaces).toEqual([
      {
        device: 'eth0',
        name: 'eth0',
        IPAddresses: [{ family: IPFamily.v4, address: '10.1.0.5', mask: '24' }],
        mtu: 1500,
        hwAddr: '02:42:ac:11:00:02',
        pciPath: '',
        type: 'veth',
        rawFlags: 4099,
      },
    ]);
    expect(cfg.routes).toEqual([
      {
        dest: '',
        gateway: '10.1.0.1',
        device: 'eth0',
        source: '',
        scope: 0,
        family: IPFamily.v4,
        flags: 0,
        mtu: 0,
      },
      {
        dest: '10.1.0.0/24',
        gateway: '',
        device: 'eth0',
        source: '10.1.0.5',
        scope: 253,
        family: IPFamily.v4,
        flags: 0,
        mtu: 0,
      },
    ]);
  });

  it('sends an IPv6-only interface without addresses, warning with each address', () => {
    const cfg = guestNetworkConfig({
      links: [veth({ addresses: [{ address: 'fd00::5', prefixLength: 64 }] })],
      routes: [],
    });
    expect(cfg.interfaces).toHaveLength(1);
    expect(cfg.interfaces[0]?.IPAddresses).toEqual([]);
    expect(cfg.warnings).toEqual([
      expect.objectContaining({
        interface: 'eth0',
        address: 'fd00::5/64',
        message: expect.stringMatching(/IPv6/),
      }),
    ]);
  });

  it('keeps the IPv4 addresses of a dual-stack interface', () => {
    const cfg = guestNetworkConfig({
      links: [
        veth({
          addresses: [
            { address: 'fd00::5', prefixLength: 64 },
            { address: '10.1.0.5', prefixLength: 16 },
          ],
        }),
      ],
      routes: [],
    });
    expect(cfg.interfaces[0]?.IPAddresses).toEqual([
      { family: IPFamily.v4, address: '10.1.0.5', mask: '16' },
    ]);
    expect(cfg.warnings).toHaveLength(1);
  });

  it('skips loopback addresses wherever they appear', () => {
    const cfg = guestNetworkConfig({
      links: [
        veth({
          addresses: [
            { address: '127.0.0.2', prefixLength: 8 },
            { address: '10.1.0.5', prefixLength: 24 },
          ],
        }),
      ],
      routes: [{ dest: '127.0.0.0/8', device: 'lo' }],
    });
    expect(cfg.interfaces.map((i) => i.name)).toEqual(['eth0']);
    expect(cfg.interfaces[0]?.IPAddresses.map((a) => a.address)).toEqual(['10.1.0.5']);
    expect(cfg.routes).toEqual([]);
    expect(cfg.warnings).toEqual([]);
  });

  it('skips a route whose destination or gateway is IPv6 (the seed let an IPv6 gateway through)', () => {
    const cfg = guestNetworkConfig({
      links: [veth()],
      routes: [
        { dest: 'fd00::/64', device: 'eth0' },
        { dest: 'default', gateway: 'fe80::1', device: 'eth0' },
        { dest: 'default', gateway: '10.1.0.1', device: 'eth0' },
      ],
    });
    expect(cfg.routes.map((r) => r.gateway)).toEqual(['10.1.0.1']);
    expect(cfg.warnings.map((w) => w.address)).toEqual(['fd00::/64', 'fe80::1']);
  });
});

// Who may wire a network namespace (claimVerdict, reservedNameVerdict, the claim lock) and whether
// a running sandbox's wiring is still there (wiringHealth), from `ip -d -j link` and
// `tc -j filter` output captured on this machine.
import { describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  claimVerdict,
  ClaimLock,
  parseLinks,
  reservedNameVerdict,
  type ObservedLink,
} from '../../../src/node-agent/network/netns-claim.js';
import {
  parseRedirects,
  wiringHealth,
  type ObservedWiring,
} from '../../../src/node-agent/network/tap-health.js';
import { tapOwnerAlias, tapOwnerOf } from '../../../src/node-agent/network/tcfilter.js';
import { storedNetnsClaims } from '../../../src/node-agent/network/sandbox-network.js';
import { newSandboxState, StateStore } from '../../../src/node-agent/state-store.js';

const A = '0b6c1f6e-0000-4000-8000-00000000000a';
const B = '0b6c1f6e-0000-4000-8000-00000000000b';

// `ip -d -j link show` in a namespace with a veth eth0 and a tap the node agent made (trimmed).
const LINKS_JSON = JSON.stringify([
  { ifindex: 1, ifname: 'lo', link_type: 'loopback' },
  { ifindex: 3, ifname: 'eth0', link_type: 'ether', linkinfo: { info_kind: 'veth' } },
  {
    ifindex: 4,
    ifname: 'tap0_kata',
    link_type: 'ether',
    linkinfo: { info_kind: 'tun', info_data: { type: 'tap', pi: false } },
    ifalias: `kata.sandbox.io/uid=${B}`,
  },
]);

// `tc -j filter show dev eth0 ingress` after attach (trimmed), and after the tap was deleted.
const filterTo = (dev: string): string =>
  JSON.stringify([
    { parent: 'ffff:', protocol: 'all', pref: 49152, kind: 'u32', chain: 0 },
    {
      parent: 'ffff:',
      kind: 'u32',
      options: {
        fh: '800::800',
        actions: [
          { order: 1, kind: 'mirred', mirred_action: 'redirect', direction: 'egress', to_dev: dev },
        ],
      },
    },
  ]);

const base = {
  uid: A,
  shown: '/run/netns/pod',
  identity: '4:4026532300',
  reserved: ['4:4026531840'],
  links: [] as ObservedLink[],
  records: [],
};

describe('tap owner mark', () => {
  it('round-trips a uid and refuses what cannot be an alias', () => {
    expect(tapOwnerOf(tapOwnerAlias(A))).toBe(A);
    expect(tapOwnerOf(undefined)).toBeUndefined();
    expect(tapOwnerOf('something else')).toBeUndefined();
    expect(tapOwnerOf('kata.sandbox.io/uid=')).toBeUndefined();
    expect(() => tapOwnerAlias('a b')).toThrow(/alias/);
  });

  it('parses links with kind, tap type and alias', () => {
    expect(parseLinks(LINKS_JSON)).toEqual([
      { name: 'lo', kind: '' },
      { name: 'eth0', kind: 'veth' },
      { name: 'tap0_kata', kind: 'tun', tunType: 'tap', alias: `kata.sandbox.io/uid=${B}` },
    ]);
    expect(parseLinks('')).toEqual([]);
    expect(() => parseLinks('{')).toThrow(/not JSON/);
  });
});

describe('claimVerdict', () => {
  it('a namespace nobody wired is free', () => {
    expect(claimVerdict({ ...base, links: parseLinks(LINKS_JSON).slice(0, 2) })).toEqual({
      ok: true,
    });
  });

  it("another sandbox's tap → NetnsInUse, naming the field but not the other sandbox", () => {
    const v = claimVerdict({ ...base, links: parseLinks(LINKS_JSON) });
    expect(v).toMatchObject({ ok: false, reason: 'NetnsInUse' });
    const msg = (v as { message: string }).message;
    expect(msg).toContain('spec.network.netnsPath "/run/netns/pod"');
    expect(msg).toContain('in use');
    expect(msg).not.toContain(B);
  });

  it('its own tap (an interrupted attempt) is not a conflict', () => {
    expect(claimVerdict({ ...base, uid: B, links: parseLinks(LINKS_JSON) })).toEqual({ ok: true });
  });

  it('a tap of ours without an owner mark (made before the mark existed) is in use', () => {
    const links: ObservedLink[] = [{ name: 'tap0_kata', kind: 'tun', tunType: 'tap' }];
    expect(claimVerdict({ ...base, links })).toMatchObject({ ok: false, reason: 'NetnsInUse' });
  });

  it("a user's own tun device not named like ours is not a claim", () => {
    const links: ObservedLink[] = [{ name: 'tun0', kind: 'tun', tunType: 'tun' }];
    expect(claimVerdict({ ...base, links })).toEqual({ ok: true });
  });

  it('another sandbox recording the same namespace (even with its tap gone) → NetnsInUse', () => {
    const records = [{ uid: B, identity: base.identity }];
    expect(claimVerdict({ ...base, records })).toMatchObject({ ok: false, reason: 'NetnsInUse' });
    // Its own record, a record of a namespace since deleted, or of another namespace: free.
    expect(claimVerdict({ ...base, records: [{ uid: A, identity: base.identity }] }).ok).toBe(true);
    expect(claimVerdict({ ...base, records: [{ uid: B, identity: undefined }] }).ok).toBe(true);
    expect(claimVerdict({ ...base, records: [{ uid: B, identity: '4:1' }] }).ok).toBe(true);
  });

  it("the node's own namespace → NetnsNotAllowed", () => {
    expect(claimVerdict({ ...base, identity: '4:4026531840' })).toMatchObject({
      ok: false,
      reason: 'NetnsNotAllowed',
    });
  });
});

describe('reservedNameVerdict', () => {
  it("refuses the agent's kata-* namespaces, by their real name", () => {
    const v = reservedNameVerdict('/run/netns/kata-1234', '/var/run/netns/kata-1234');
    expect(v).toMatchObject({ ok: false, reason: 'NetnsNotAllowed' });
    expect((v as { message: string }).message).toContain(
      'spec.network.netnsPath "/var/run/netns/kata-1234"',
    );
    expect(reservedNameVerdict('/run/netns/pod-kata-1', '/run/netns/pod-kata-1').ok).toBe(true);
  });
});

describe('ClaimLock', () => {
  it('runs claims one at a time, and a failed one does not block the next', async () => {
    const lock = new ClaimLock();
    const order: string[] = [];
    let inside = 0;
    let most = 0;
    const job = (name: string, fail = false) =>
      lock.run(async () => {
        inside++;
        most = Math.max(most, inside);
        order.push(`${name}+`);
        await new Promise((r) => setTimeout(r, 5));
        order.push(`${name}-`);
        inside--;
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([job('a'), job('b', true), job('c')]);
    expect(most).toBe(1);
    expect(order).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });
});

describe('wiringHealth', () => {
  const eps = [{ ifName: 'eth0', tap: 'tap0_kata', mac: '02:00:00:00:00:01', mtu: 1500 }];
  const intact: ObservedWiring = {
    links: parseLinks(LINKS_JSON),
    redirects: new Map([
      ['eth0', parseRedirects(filterTo('tap0_kata'))],
      ['tap0_kata', parseRedirects(filterTo('eth0'))],
    ]),
  };

  it('parses redirect targets', () => {
    expect(parseRedirects(filterTo('tap0_kata'))).toEqual(['tap0_kata']);
    expect(parseRedirects('[]')).toEqual([]);
  });

  it('intact wiring is healthy', () => {
    expect(wiringHealth(B, eps, intact)).toEqual({ ok: true });
  });

  it('a deleted tap (the redirect then points at "*") → NetworkLost', () => {
    const v = wiringHealth(B, eps, {
      links: intact.links.filter((l) => l.name !== 'tap0_kata'),
      redirects: new Map([['eth0', parseRedirects(filterTo('*'))]]),
    });
    expect(v).toMatchObject({ ok: false, reason: 'NetworkLost' });
    expect((v as { message: string }).message).toContain('tap0_kata');
    expect((v as { message: string }).message).toContain('gone');
  });

  it('a removed redirect → NetworkLost naming the direction', () => {
    const v = wiringHealth(B, eps, {
      links: intact.links,
      redirects: new Map([
        ['eth0', []],
        ['tap0_kata', ['eth0']],
      ]),
    });
    expect(v).toMatchObject({ ok: false, reason: 'NetworkLost' });
    expect((v as { message: string }).message).toContain('eth0 → tap0_kata');
  });

  it("a tap now marked as another sandbox's, or not a tap → NetworkLost", () => {
    expect(wiringHealth(A, eps, intact).ok).toBe(false);
    const notTap = intact.links.map((l) =>
      l.name === 'tap0_kata' ? { name: 'tap0_kata', kind: 'dummy' } : l,
    );
    expect(wiringHealth(B, eps, { ...intact, links: notTap }).ok).toBe(false);
  });

  it('the interface itself gone → NetworkLost', () => {
    const v = wiringHealth(B, eps, {
      ...intact,
      links: intact.links.filter((l) => l.name !== 'eth0'),
    });
    expect((v as { message: string }).message).toContain('interface eth0 is gone');
  });
});

describe('storedNetnsClaims', () => {
  it('lists the namespace each state file records, skipping sandboxes without one and unreadable files', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'netns-claims-'));
    try {
      const store = new StateStore(dir);
      const withNet = newSandboxState({ uid: A, namespace: 'n', name: 'a' }, new Date(0));
      withNet.network = { mode: 'netns', nsPath: '/run/netns/pod', endpoints: [], guest: {} };
      await store.save(withNet);
      await store.save(newSandboxState({ uid: B, namespace: 'n', name: 'b' }, new Date(0)));
      mkdirSync(path.join(dir, 'sandboxes', 'broken'), { recursive: true });
      writeFileSync(path.join(dir, 'sandboxes', 'broken', 'state.json'), '{');
      expect(await storedNetnsClaims(store)).toEqual([{ uid: A, nsPath: '/run/netns/pod' }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

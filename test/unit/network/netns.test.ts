// Parsing a namespace's `ip -j` output (captured from a test namespace: veth eth0 with an IPv4
// and an IPv6 address, a default and a static route), tc/tap argv, and namespace path checks.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RunOptions, RunResult } from '../../../src/node-agent/network/exec.js';
import { inNetns } from '../../../src/node-agent/network/exec.js';
import { guestNetworkConfig } from '../../../src/node-agent/network/guest-network-config.js';
import { checkNetnsPath } from '../../../src/node-agent/network/netns-path.js';
import {
  parseNetnsLinks,
  parseNetnsRoutes,
  readNetns,
} from '../../../src/node-agent/network/netns-reader.js';
import {
  attach,
  attachArgv,
  detach,
  detachArgv,
  netnsLaunchPrefix,
  nicsFor,
  tapName,
} from '../../../src/node-agent/network/tcfilter.js';
import { QemuProcess } from '../../../src/node-agent/hypervisor/qemu-process.js';

const fixture = (f: string): string =>
  readFileSync(path.join(import.meta.dirname, 'fixtures', f), 'utf8');

describe('netns JSON parsing', () => {
  it('links: kind from linkinfo, MAC lower case, link-local IPv6 dropped, flags as bits', () => {
    const links = parseNetnsLinks(fixture('ip-d-j-addr.json'));
    expect(links).toEqual([
      {
        name: 'lo',
        mtu: 65536,
        hwAddr: '00:00:00:00:00:00',
        type: 'loopback',
        rawFlags: 0x1 | 0x8,
        addresses: [
          { address: '127.0.0.1', prefixLength: 8 },
          { address: '::1', prefixLength: 128 },
        ],
      },
      {
        name: 'eth0',
        mtu: 1500,
        hwAddr: '42:93:cf:ac:d4:3b',
        type: 'veth',
        rawFlags: 0x1 | 0x2 | 0x1000,
        addresses: [
          { address: '10.99.0.2', prefixLength: 24 },
          { address: 'fd00::2', prefixLength: 64 },
        ],
      },
    ]);
  });

  it('routes: default, via gateway with source, kernel link route; IPv6 kernel routes dropped', () => {
    expect(parseNetnsRoutes(fixture('ip-j-4-route.json'), 4)).toEqual([
      { dest: 'default', gateway: '10.99.0.1', device: 'eth0', scope: 0 },
      { dest: '10.98.0.0/16', gateway: '10.99.0.1', source: '10.99.0.2', device: 'eth0', scope: 0 },
      { dest: '10.99.0.0/24', source: '10.99.0.2', device: 'eth0', scope: 253 },
    ]);
    expect(parseNetnsRoutes(fixture('ip-j-6-route.json'), 6)).toEqual([]);
    expect(
      parseNetnsRoutes('[{"dst":"fd01::/64","gateway":"fd00::1","dev":"eth0","flags":[]}]', 6),
    ).toEqual([{ dest: 'fd01::/64', gateway: 'fd00::1', device: 'eth0', scope: 0 }]);
  });

  it('skips broadcast/local routes and routes without a device; rejects non-arrays', () => {
    expect(
      parseNetnsRoutes('[{"type":"broadcast","dst":"10.0.0.255","dev":"eth0"},{"dst":"x"}]'),
    ).toEqual([]);
    expect(parseNetnsRoutes('')).toEqual([]);
    expect(() => parseNetnsLinks('{}')).toThrow(/expected a JSON array/);
    expect(() => parseNetnsLinks('nope')).toThrow(/not JSON/);
  });

  it('feeds guestNetworkConfig: loopback skipped, IPv6 skipped with a warning, mask as prefix', () => {
    const cfg = guestNetworkConfig({
      links: parseNetnsLinks(fixture('ip-d-j-addr.json')),
      routes: parseNetnsRoutes(fixture('ip-j-4-route.json')),
    });
    expect(cfg.interfaces).toHaveLength(1);
    expect(cfg.interfaces[0]).toMatchObject({
      name: 'eth0',
      hwAddr: '42:93:cf:ac:d4:3b',
      mtu: 1500,
      IPAddresses: [{ address: '10.99.0.2', mask: '24' }],
    });
    expect(cfg.routes.map((r) => r.dest)).toEqual(['', '10.98.0.0/16', '10.99.0.0/24']);
    expect(cfg.warnings).toEqual([
      expect.objectContaining({ interface: 'eth0', address: 'fd00::2/64' }),
    ]);
  });

  it('readNetns runs ip inside the namespace with nsenter and a timeout', async () => {
    const calls: { argv: string[]; opts: RunOptions }[] = [];
    const out: Record<string, string> = {
      addr: fixture('ip-d-j-addr.json'),
      '-4': fixture('ip-j-4-route.json'),
      '-6': fixture('ip-j-6-route.json'),
    };
    const run = async (
      cmd: string,
      args: readonly string[],
      opts: RunOptions,
    ): Promise<RunResult> => {
      calls.push({ argv: [cmd, ...args], opts });
      const key = args.includes('addr') ? 'addr' : args.includes('-4') ? '-4' : '-6';
      return { code: 0, signal: null, stdout: out[key]!, stderr: '' };
    };
    const ns = await readNetns('/run/netns/x', { run, timeoutMs: 1234 });
    expect(ns.links.map((l) => l.name)).toEqual(['lo', 'eth0']);
    expect(ns.routes).toHaveLength(3);
    expect(calls.map((c) => c.argv)).toEqual([
      ['nsenter', '--net=/run/netns/x', '--', 'ip', '-d', '-j', 'addr', 'show'],
      ['nsenter', '--net=/run/netns/x', '--', 'ip', '-j', '-4', 'route', 'show'],
      ['nsenter', '--net=/run/netns/x', '--', 'ip', '-j', '-6', 'route', 'show'],
    ]);
    expect(calls.every((c) => c.opts.timeoutMs === 1234)).toBe(true);
  });

  it('a failing ip is an error with its stderr', async () => {
    const run = async (): Promise<RunResult> => ({
      code: 1,
      signal: null,
      stdout: '',
      stderr: 'setns: Invalid argument',
    });
    await expect(readNetns('/run/netns/x', { run })).rejects.toThrow(/setns: Invalid argument/);
  });
});

describe('tc/tap argv', () => {
  it('tap names fit IFNAMSIZ', () => {
    expect(tapName(0)).toBe('tap0_kata');
    expect(tapName(999_999).length).toBeLessThanOrEqual(15);
    expect(() => tapName(-1)).toThrow();
  });

  it('attach: tap, mtu, ingress redirects both ways, up', () => {
    const mirred = (from: string, to: string): string[] => [
      'tc', 'filter', 'add', 'dev', from, 'parent', 'ffff:', 'protocol', 'all', 'u32',
      'match', 'u8', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', to,
    ]; // prettier-ignore
    expect(attachArgv('eth0', 'tap0_kata', 1450, 'uid-1')).toEqual([
      ['ip', 'tuntap', 'add', 'dev', 'tap0_kata', 'mode', 'tap'],
      ['ip', 'link', 'set', 'dev', 'tap0_kata', 'alias', 'kata.sandbox.io/uid=uid-1'],
      ['ip', 'link', 'set', 'dev', 'tap0_kata', 'mtu', '1450'],
      ['tc', 'qdisc', 'add', 'dev', 'eth0', 'ingress'],
      mirred('eth0', 'tap0_kata'),
      ['tc', 'qdisc', 'add', 'dev', 'tap0_kata', 'ingress'],
      mirred('tap0_kata', 'eth0'),
      ['ip', 'link', 'set', 'dev', 'tap0_kata', 'up'],
    ]);
    expect(attachArgv('eth0', 'tap0_kata', 0, 'uid-1')).toHaveLength(7);
    expect(() => attachArgv('eth0; rm -rf /', 'tap0_kata', 0, 'u')).toThrow(
      /not an interface name/,
    );
    expect(() => attachArgv('eth0', 'tap0_kata', 0, 'a b')).toThrow(/alias/);
  });

  it('detach: the ingress qdisc and the tap', () => {
    expect(detachArgv('eth0', 'tap0_kata')).toEqual([
      ['tc', 'qdisc', 'del', 'dev', 'eth0', 'ingress'],
      ['ip', 'link', 'del', 'dev', 'tap0_kata'],
    ]);
  });

  it('launch prefix and NICs', () => {
    expect(netnsLaunchPrefix('/run/netns/a')).toEqual(['nsenter', '--net=/run/netns/a', '--']);
    expect(inNetns(undefined, ['ip'])).toEqual(['ip']);
    expect(
      nicsFor([{ ifName: 'eth0', tap: 'tap0_kata', mac: '02:00:00:00:00:01', mtu: 1500 }]),
    ).toEqual([{ tap: 'tap0_kata', mac: '02:00:00:00:00:01' }]);
  });

  it('attach cleans leftovers first, runs everything in the namespace, and undoes itself on failure', async () => {
    const calls: string[][] = [];
    const fail: { on?: string } = {};
    const run = async (cmd: string, args: readonly string[]): Promise<RunResult> => {
      const argv = [cmd, ...args];
      calls.push(argv);
      if (fail.on && argv.join(' ').includes(fail.on)) {
        return {
          code: 2,
          signal: null,
          stdout: '',
          stderr: 'RTNETLINK answers: Operation not permitted',
        };
      }
      if (args.includes('del')) {
        return { code: 1, signal: null, stdout: '', stderr: 'Cannot find device "tap0_kata"' };
      }
      return { code: 0, signal: null, stdout: '', stderr: '' };
    };
    const eps = await attach(
      '/run/netns/a',
      [{ name: 'eth0', hwAddr: 'AA:00:00:00:00:01', mtu: 1500 }],
      'uid-1',
      { run },
    );
    expect(eps).toEqual([
      { ifName: 'eth0', tap: 'tap0_kata', mac: 'aa:00:00:00:00:01', mtu: 1500 },
    ]);
    expect(calls.every((c) => c[0] === 'nsenter' && c[1] === '--net=/run/netns/a')).toBe(true);
    expect(calls.slice(0, 2).map((c) => c.slice(3, 6))).toEqual([
      ['tc', 'qdisc', 'del'],
      ['ip', 'link', 'del'],
    ]);
    expect(await detach('/run/netns/a', eps, { run })).toEqual([]); // already gone: fine

    calls.length = 0;
    fail.on = 'mirred egress redirect dev eth0';
    await expect(
      attach('/run/netns/a', [{ name: 'eth0', hwAddr: 'aa:00:00:00:00:01', mtu: 1500 }], 'uid-1', {
        run,
      }),
    ).rejects.toThrow(/Operation not permitted/);
    expect(calls.slice(-2).map((c) => c.slice(3, 6))).toEqual([
      ['tc', 'qdisc', 'del'],
      ['ip', 'link', 'del'],
    ]);
  });
});

describe('netns path', () => {
  let root: string;
  let outside: string;
  beforeAll(() => {
    root = mkdtempSync(path.join(tmpdir(), 'netns-root-'));
    outside = mkdtempSync(path.join(tmpdir(), 'netns-out-'));
    writeFileSync(path.join(root, 'ns1'), '');
    writeFileSync(path.join(outside, 'ns2'), '');
    symlinkSync(path.join(outside, 'ns2'), path.join(root, 'escape'));
    mkdirSync(path.join(root, 'dir'));
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });
  const check = (p: string, requireNsfs = false): string =>
    checkNetnsPath(p, { roots: [root], requireNsfs });

  it('accepts a file under a root', () => {
    expect(check(path.join(root, 'ns1'))).toBe(path.join(root, 'ns1'));
  });

  it('refuses /proc, missing, outside, symlink escapes, the root, relative — naming the field', () => {
    for (const [p, why] of [
      ['/proc/1/ns/net', /under \/proc/],
      ['/proc/self/../1/ns/net', /under \/proc/],
      [path.join(root, 'missing'), /does not exist/],
      [path.join(outside, 'ns2'), /outside the allowed namespace roots/],
      [path.join(root, 'escape'), /outside the allowed namespace roots/],
      [path.join(root, '..', path.basename(outside), 'ns2'), /outside/],
      [root, /outside/],
      [path.join(root, 'dir'), /not a namespace file/],
      ['run/netns/x', /not an absolute path/],
    ] as const) {
      expect(() => check(p)).toThrow(/^spec\.network\.netnsPath: /);
      expect(() => check(p)).toThrow(why);
    }
  });

  it('a plain file is not a network namespace when nsfs is required', () => {
    expect(() => check(path.join(root, 'ns1'), true)).toThrow(/not a network namespace/);
  });

  it('default roots refuse a temp path', () => {
    expect(() => checkNetnsPath(path.join(root, 'ns1'))).toThrow(/outside the allowed/);
  });
});

describe('QEMU launch prefix', () => {
  it('runs the binary through the prefix, and the pid is the exec-ed program', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'launch-prefix-'));
    try {
      const proc = await QemuProcess.launch({
        launchPrefix: ['env', 'KATA_TEST_PREFIX=1'],
        qemuBinary: 'sleep',
        args: ['30'],
        qmpSocket: path.join(dir, 'qmp.sock'),
        consoleLog: path.join(dir, 'console.log'),
        stderrLog: path.join(dir, 'qemu.log'),
      });
      await new Promise((r) => setTimeout(r, 300));
      const cmdline = readFileSync(`/proc/${proc.pid}/cmdline`, 'utf8').split('\0');
      expect(cmdline.slice(0, 2)).toEqual(['sleep', '30']);
      expect(readFileSync(`/proc/${proc.pid}/environ`, 'utf8')).toContain('KATA_TEST_PREFIX=1');
      await proc.stop({ powerdownGraceMs: 0, quitGraceMs: 0, qmpTimeoutMs: 200 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

import { describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DEFAULTS } from '../../../src/node-agent/config.js';
import {
  auditExitCode,
  classify,
  type KindObservation,
} from '../../../src/node-agent/leak-audit/classify.js';
import { parseAuditArgs, reportText } from '../../../src/node-agent/leak-audit/cli.js';
import {
  hostLocalContainerId,
  hostLocalDirs,
  logDirUid,
  mountObjects,
  parseCmdline,
  qemuSandboxUid,
  tapObjects,
} from '../../../src/node-agent/leak-audit/host-objects.js';
import { LEAK_KINDS } from '../../../src/node-agent/leak-audit/kinds.js';
import { liveFromList, withWarmVms } from '../../../src/node-agent/leak-audit/live-set.js';
import { newSandboxState, StateStore } from '../../../src/node-agent/state-store.js';
import { WarmVmStore } from '../../../src/node-agent/warm-pool/warm-vm-store.js';
import { shapeOf } from '../../../src/crds/index.js';
import { observeHost, type AuditRoots } from '../../../src/node-agent/leak-audit/observe.js';
import { parseLinks } from '../../../src/node-agent/network/netns-claim.js';
import type { Runner } from '../../../src/node-agent/network/exec.js';
import { parseMountInfo } from '../../../src/node-agent/storage/mountinfo.js';

const LIVE = '11111111-1111-4111-8111-111111111111';
const DEAD = '22222222-2222-4222-8222-222222222222';

describe('leak audit: reading host objects', () => {
  it('a QEMU is a sandbox’s by its -name and a path under this agent’s run dir', () => {
    const argv = parseCmdline(
      `qemu-system-x86_64\0-name\0ksb-${DEAD},debug-threads=on\0-pidfile\0/run/ka/sandboxes/${DEAD}/qemu.pid\0`,
    );
    expect(qemuSandboxUid(argv, '/run/ka')).toBe(DEAD);
    // Another agent's run dir, or a QEMU not named by the agent: not this agent's.
    expect(qemuSandboxUid(argv, '/run/other')).toBeUndefined();
    expect(qemuSandboxUid(['qemu', '-name', 'vm1', '/run/ka/sandboxes/x'], '/run/ka')).toBe(
      undefined,
    );
  });

  it('mounts under <root>/<uid>/ belong to that uid', () => {
    const mi = parseMountInfo(
      [
        `90 30 0:50 / /run/ka/shared/${DEAD}/c1/rootfs rw,nosuid,nodev - ext4 /dev/sda1 rw`,
        `91 30 0:51 / /var/lib/ka/rootfs-views/${LIVE}/c1/merged rw - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c`,
        `92 30 0:52 / /run/ka/shared-other/x rw - tmpfs tmpfs rw`,
      ].join('\n'),
    );
    expect(mountObjects(mi, '/run/ka/shared', 'share-mount')).toEqual([
      { kind: 'share-mount', uid: DEAD, where: `/run/ka/shared/${DEAD}/c1/rootfs (ext4)` },
    ]);
    expect(mountObjects(mi, '/var/lib/ka/rootfs-views/', 'view-mount').map((o) => o.uid)).toEqual([
      LIVE,
    ]);
  });

  it('taps: only tun taps named *_kata with an owner alias', () => {
    const links = parseLinks(
      JSON.stringify([
        {
          ifname: 'tap0_kata',
          ifalias: `kata.sandbox.io/uid=${DEAD}`,
          linkinfo: { info_kind: 'tun', info_data: { type: 'tap' } },
        },
        { ifname: 'tap1_kata', linkinfo: { info_kind: 'tun' } },
        { ifname: 'eth0', ifalias: `kata.sandbox.io/uid=${DEAD}`, linkinfo: { info_kind: 'veth' } },
      ]),
    );
    expect(tapObjects(links, '/run/netns/x')).toEqual([
      { kind: 'tap', uid: DEAD, where: 'tap0_kata in /run/netns/x' },
    ]);
  });

  it('log dirs and host-local allocations name the uid', () => {
    expect(logDirUid(`default_web_${DEAD}`)).toBe(DEAD);
    expect(logDirUid('not-a-sandbox')).toBeUndefined();
    expect(hostLocalContainerId(`${DEAD}\r\neth0`)).toBe(DEAD);
    expect(hostLocalContainerId('')).toBeUndefined();
    const list = {
      cniVersion: '1.0.0',
      name: 'kata-net',
      plugins: [
        { type: 'bridge', ipam: { type: 'host-local', dataDir: '/tmp/ipam' } },
        { type: 'portmap' },
      ],
    };
    expect(hostLocalDirs(list)).toEqual(['/tmp/ipam/kata-net']);
    expect(
      hostLocalDirs({ ...list, plugins: [{ type: 'bridge', ipam: { type: 'host-local' } }] }),
    ).toEqual(['/var/lib/cni/networks/kata-net']);
  });
});

/** One object of every kind for the live uid and for the dead one. */
function everyKind(): KindObservation[] {
  return LEAK_KINDS.map((kind) => ({
    kind,
    place: `/place/${kind}`,
    checked: true,
    objects: [LIVE, DEAD].map((uid) => ({
      kind,
      uid,
      where: `/place/${kind}/${uid}`,
      ...(kind === 'qemu' && { pid: uid === LIVE ? 100 : 200 }),
    })),
  }));
}

describe('leak audit: classifying', () => {
  it('reports the dead sandbox’s object of every kind, never the live one’s', () => {
    const r = classify(everyKind(), liveFromList(LIVE), { hostWide: 'all' });
    expect(r.kinds.map((k) => [k.kind, k.status, k.owned])).toEqual(
      LEAK_KINDS.map((k) => [k, 'leftovers', 1]),
    );
    const left = r.kinds.flatMap((k) => k.leftovers);
    expect(left).toHaveLength(LEAK_KINDS.length);
    expect(left.every((l) => l.uid === DEAD)).toBe(true);
    expect(left.find((l) => l.kind === 'qemu')).toMatchObject({ pid: 200 });
    expect(left[0]!.why).toMatch(new RegExp(`no live sandbox has uid ${DEAD}`));
    expect(r.leftovers).toBe(LEAK_KINDS.length);
    expect(auditExitCode(r)).toBe(1);
  });

  it('all live: clean, exit 0', () => {
    const r = classify(everyKind(), liveFromList(`${LIVE},${DEAD}`), { hostWide: 'all' });
    expect(r.kinds.every((k) => k.status === 'clean' && k.owned === 2)).toBe(true);
    expect(auditExitCode(r)).toBe(0);
    expect(reportText(r)).toMatch(/no leftovers\n$/);
  });

  it('two QEMUs for one sandbox, live or not, are both reported', () => {
    const qemu = (pid: number) => ({ kind: 'qemu' as const, uid: LIVE, where: `pid ${pid}`, pid });
    const obs: KindObservation[] = [
      { kind: 'qemu', place: '/proc', checked: true, objects: [qemu(10), qemu(11)] },
    ];
    const r = classify(obs, liveFromList(LIVE), { hostWide: 'all', kinds: ['qemu'] });
    expect(r.kinds[0]!.leftovers.map((l) => [l.pid, l.why])).toEqual([
      [10, `2 QEMUs (pids 10, 11) run for uid ${LIVE}; a sandbox has one VM`],
      [11, `2 QEMUs (pids 10, 11) run for uid ${LIVE}; a sandbox has one VM`],
    ]);
  });

  it('a kind it could not look at is NOT CHECKED, not clean', () => {
    const obs: KindObservation[] = [
      { kind: 'ipam', place: '/etc/cni/net.d', checked: false, note: 'no CNI config', objects: [] },
    ];
    const r = classify(obs, liveFromList(''), { hostWide: 'all', kinds: ['ipam', 'netns'] });
    expect(r.kinds.map((k) => k.status)).toEqual(['unchecked', 'unchecked']);
    expect(r.kinds[0]!.unchecked).toEqual([{ place: '/etc/cni/net.d', why: 'no CNI config' }]);
    expect(reportText(r)).toMatch(/ipam {9}NOT CHECKED \(\/etc\/cni\/net.d: no CNI/);
  });

  it('--host-wide known: host-wide objects of uids this agent’s roots never held are not judged', () => {
    const other = '33333333-3333-4333-8333-333333333333';
    const obs: KindObservation[] = [
      {
        kind: 'run-dir',
        place: '/run/ka/sandboxes',
        checked: true,
        objects: [{ kind: 'run-dir', uid: DEAD, where: `/run/ka/sandboxes/${DEAD}` }],
      },
      {
        kind: 'netns',
        place: '/run/netns',
        checked: true,
        objects: [DEAD, other].map((uid) => ({
          kind: 'netns',
          uid,
          where: `/run/netns/kata-${uid}`,
        })),
      },
    ];
    const known = classify(obs, liveFromList(''), { hostWide: 'known' });
    const netns = known.kinds.find((k) => k.kind === 'netns')!;
    expect(netns.leftovers.map((l) => l.uid)).toEqual([DEAD]);
    expect(netns.notJudged).toBe(1);
    const all = classify(obs, liveFromList(''), { hostWide: 'all' });
    expect(all.kinds.find((k) => k.kind === 'netns')!.leftovers).toHaveLength(2);
  });
});

describe('leak audit: command line', () => {
  it('takes the node agent’s roots from its flags and env, and its own flags', () => {
    const a = parseAuditArgs(['--run-dir', '/r', '--output', 'json', '--kinds', 'qemu,tap'], {
      STATE_DIR: '/s',
    });
    expect(a.config).toMatchObject({ runDir: '/r', stateDir: '/s', logDir: DEFAULTS.logDir });
    expect(a).toMatchObject({ output: 'json', kinds: ['qemu', 'tap'], live: { from: 'auto' } });
    expect(parseAuditArgs(['--live-uids', ''], {}).live).toEqual({ from: 'list', uids: '' });
  });

  it('refuses bad values, naming the flag', () => {
    expect(() => parseAuditArgs(['--kinds', 'qemu,vm'], {})).toThrow(/--kinds: "vm"/);
    expect(() => parseAuditArgs(['--output', 'yaml'], {})).toThrow(/--output/);
    expect(() => parseAuditArgs(['--live-uids', 'a', '--live-from', 'api'], {})).toThrow(/exclude/);
    expect(() => parseAuditArgs(['--state-dir', 'rel'], {})).toThrow(/--state-dir/);
  });
});

describe('leak audit: observing a host laid out in a temp dir', () => {
  it('finds every kind where the node agent puts it', async () => {
    const t = mkdtempSync(path.join(tmpdir(), 'leak-audit-'));
    try {
      const mk = (...p: string[]): string => {
        const d = path.join(t, ...p);
        mkdirSync(d, { recursive: true });
        return d;
      };
      const roots: AuditRoots = {
        ...DEFAULTS,
        stateDir: mk('state'),
        runDir: mk('run'),
        logDir: mk('log'),
        netnsRoots: [mk('netns')],
        cniConfDir: mk('cni'),
        cgroupRoot: mk('cg'),
      };
      mk('state/sandboxes', DEAD);
      mk('run/sandboxes', DEAD);
      mk('run/shared', DEAD);
      mk('state/rootfs-views', DEAD, 'c1');
      mk('log', `ns_web_${DEAD}`);
      mk('cg/memory/kata-sandboxes', DEAD);
      mk('state/images');
      writeFileSync(path.join(t, 'state/images/leases.json'), JSON.stringify({ [DEAD]: ['sha'] }));
      writeFileSync(path.join(t, 'netns', `kata-${DEAD}`), '');
      writeFileSync(
        path.join(t, 'cni/10-net.conflist'),
        JSON.stringify({
          cniVersion: '1.0.0',
          name: 'net',
          plugins: [
            { type: 'bridge', ipam: { type: 'host-local', dataDir: path.join(t, 'ipam') } },
          ],
        }),
      );
      mk('ipam/net');
      writeFileSync(path.join(t, 'ipam/net/10.0.0.2'), `${DEAD}\neth0`);
      writeFileSync(path.join(t, 'ipam/net/last_reserved_ip.0'), '10.0.0.2');
      mk('proc/42');
      writeFileSync(
        path.join(t, 'proc/42/cmdline'),
        `qemu\0-name\0ksb-${DEAD}\0-pidfile\0${t}/run/sandboxes/${DEAD}/qemu.pid\0`,
      );
      const tap = JSON.stringify([
        {
          ifname: 'tap0_kata',
          ifalias: `kata.sandbox.io/uid=${DEAD}`,
          linkinfo: { info_kind: 'tun' },
        },
      ]);
      const calls: string[][] = [];
      const run: Runner = async (cmd, args) => {
        calls.push([cmd, ...args]);
        return { code: 0, signal: null, stdout: cmd === 'nsenter' ? tap : '[]', stderr: '' };
      };
      const mountinfo = parseMountInfo(
        [
          `30 1 0:30 / ${t}/cg/memory rw - cgroup cgroup rw,memory`,
          `90 1 0:50 / ${t}/run/shared/${DEAD}/c1/rootfs rw - ext4 /dev/sda1 rw`,
          `91 1 0:51 / ${t}/state/rootfs-views/${DEAD}/c1/merged rw - overlay overlay rw`,
        ].join('\n'),
      );
      const obs = await observeHost(roots, {
        run,
        mounts: async () => mountinfo,
        procRoot: path.join(t, 'proc'),
      });
      const r = classify(obs, liveFromList(''), { hostWide: 'all' });
      expect(r.kinds.map((k) => [k.kind, k.status, k.leftovers.map((l) => l.uid)])).toEqual(
        LEAK_KINDS.map((k) => [k, 'leftovers', [DEAD]]),
      );
      // Taps are looked for in the node namespace and in each namespace under the roots.
      expect(calls).toEqual([
        ['ip', '-d', '-j', 'link', 'show'],
        ['nsenter', `--net=${t}/netns/kata-${DEAD}`, '--', 'ip', '-d', '-j', 'link', 'show'],
      ]);
    } finally {
      rmSync(t, { recursive: true, force: true });
    }
  });
});

describe('leak audit: warm VMs count as owned', () => {
  it('adds warm records and the VMs live sandboxes took to the live set', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'audit-warm-'));
    try {
      const store = new StateStore(dir);
      const taking = newSandboxState({ uid: 'sb-1', namespace: 'n', name: 'a' }, new Date());
      taking.warm = { vmUid: 'vm-taken', pool: 'p', netnsName: 'kata-vm-taken', claimMillis: 5 };
      await store.save(taking);
      const gone = newSandboxState({ uid: 'sb-gone', namespace: 'n', name: 'b' }, new Date());
      gone.warm = { vmUid: 'vm-of-gone', pool: 'p', netnsName: 'kata-vm-of-gone', claimMillis: 5 };
      await store.save(gone);
      await new WarmVmStore(dir).save({
        vmUid: 'vm-idle',
        pool: 'p',
        poolUid: 'u',
        shape: shapeOf(undefined),
        createdAt: new Date().toISOString(),
        runDir: '/r',
        shareDir: '/s',
        netnsName: 'kata-vm-idle',
      });
      const live = await withWarmVms(liveFromList('sb-1'), dir);
      expect([...live.uids].sort()).toEqual(['sb-1', 'vm-idle', 'vm-taken']);
      expect(live.source).toContain('1 warm VM(s) and 1 VM(s) taken from warm pools');
      const none = await withWarmVms(liveFromList(''), mkdtempSync(path.join(tmpdir(), 'aw-')));
      expect([...none.uids]).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

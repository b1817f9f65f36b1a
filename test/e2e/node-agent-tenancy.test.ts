// One network namespace, one sandbox, end to end (real control plane, controller and node agent
// as processes, real QEMU): one running sandbox, "victim", carries every check that needs a VM.
// Other sandboxes naming its namespace (the same path, or a second bind mount of it) are refused
// with NetnsInUse before anything is touched, and its tap and traffic stay; a kata-* namespace is
// NetnsNotAllowed; deleting its tap on the host turns NetworkReady False (NetworkLost).
// Namespaces and addresses are the test's own (10.206.0.0/24 between two namespaces it made).
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { KataSandbox } from '../../src/crds/index.js';
import { adminKubeConfig, freshNamespace } from '../integration/cluster.js';
import {
  grantElectionLease,
  revokeElectionLease,
  installControllerPrereqs,
  startController,
  type RunningController,
} from '../integration/controller-harness.js';
import {
  installNodeAgentRbac,
  makeBusyboxRootfs,
  startNodeAgent,
  type NodeAgentDirs,
  type RunningNodeAgent,
} from './node-agent-harness.js';
import { ensureImage, sh } from './sandbox-vm.js';
import { phase, qemuPidsOf, removeScratch, SandboxApi } from './sandbox-api.js';

jest.setTimeout(600_000);

const ELECTION_ID = `kata-controller-e2e-ten-${process.pid}`;
const TAG = randomBytes(3).toString('hex');
const NODE = `e2e-ten-${process.pid}`;
const POD_NS = `knt-pod-${TAG}`;
const OUT_NS = `knt-out-${TAG}`;
/** A second name (bind mount) of the pod namespace. */
const ALIAS_NS = `knt-alias-${TAG}`;
/** Named like the node agent's own (mode cni) namespaces. */
const AGENT_LIKE_NS = `kata-knt-${TAG}`;
const madeNetns: string[] = [];

let base: string;
let dirs: NodeAgentDirs;
let rootfs: string;
let sandboxes: SandboxApi;
let controller: RunningController | undefined;
let agent: RunningNodeAgent | undefined;
let victim: KataSandbox;

const ipIn = (ns: string, ...args: string[]): string => sh(['ip', '-n', ns, ...args]);
const netnsAdd = (name: string): void => {
  sh(['ip', 'netns', 'add', name]);
  madeNetns.push(name);
  ipIn(name, 'link', 'set', 'lo', 'up');
};
/** Fetches a URL from inside a namespace, retrying while the server in the guest starts. */
async function fetchIn(ns: string, url: string, timeoutMs = 90_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return sh(['ip', 'netns', 'exec', ns, 'busybox', 'wget', '-q', '-O', '-', url], 10_000);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
const cond = (sb: KataSandbox | undefined, type: string) =>
  sb?.status?.conditions?.find((c) => c.type === type);

beforeAll(async () => {
  ensureImage();
  await installControllerPrereqs();
  await installNodeAgentRbac();
  await grantElectionLease(ELECTION_ID);
  const ns = await freshNamespace('node-agent-tenancy');
  sandboxes = new SandboxApi(await adminKubeConfig(), ns, NODE);

  base = mkdtempSync('/tmp/knt-e2e-');
  const roots = path.join(base, 'roots');
  rootfs = path.join(roots, 'busybox');
  makeBusyboxRootfs(rootfs, ['www']);
  writeFileSync(path.join(rootfs, 'www/index.html'), 'victim-up\n');
  dirs = {
    stateDir: path.join(base, 'state'),
    runDir: path.join(base, 'run'),
    logDir: path.join(base, 'logs'),
    roots: [roots],
  };

  netnsAdd(POD_NS);
  netnsAdd(OUT_NS);
  ipIn(POD_NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0', 'netns', OUT_NS);
  ipIn(POD_NS, 'addr', 'add', '10.206.0.2/24', 'dev', 'eth0');
  ipIn(POD_NS, 'link', 'set', 'eth0', 'up');
  ipIn(OUT_NS, 'addr', 'add', '10.206.0.1/24', 'dev', 'peer0');
  ipIn(OUT_NS, 'link', 'set', 'peer0', 'up');
  netnsAdd(AGENT_LIKE_NS);
  writeFileSync(`/run/netns/${ALIAS_NS}`, '');
  sh(['mount', '--bind', `/run/netns/${POD_NS}`, `/run/netns/${ALIAS_NS}`]);

  controller = await startController(`e2e-node-agent-ten-${process.pid}`, {
    namespace: ns,
    electionId: ELECTION_ID,
  });
  agent = await startNodeAgent(NODE, dirs, path.join(base, 'node-agent.log'), [
    '--network-check-ms',
    '1000',
  ]);
}, 30 * 60_000);

afterAll(async () => {
  await agent?.stop('SIGKILL');
  await controller?.stop();
  await revokeElectionLease(ELECTION_ID).catch(() => '');
  if (base) await removeScratch(base);
  try {
    sh(['umount', `/run/netns/${ALIAS_NS}`]);
  } catch {
    // not mounted
  }
  sh(['rm', '-f', `/run/netns/${ALIAS_NS}`]);
  for (const n of madeNetns.reverse()) {
    try {
      sh(['ip', 'netns', 'del', n]);
    } catch {
      // gone
    }
  }
}, 120_000);

const refusedSpec = (netnsPath: string) => ({
  network: { mode: 'netns', netnsPath },
  terminationGracePeriodSeconds: 1,
  containers: [{ name: 'c', rootfs: { hostPath: { path: rootfs } }, command: ['/bin/true'] }],
});

describe('tenant isolation on a node (real control plane, real QEMU)', () => {
  it('victim runs in its namespace; its tap carries its uid', async () => {
    await sandboxes.create('victim', {
      network: { mode: 'netns', netnsPath: `/run/netns/${POD_NS}` },
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'srv',
          rootfs: { hostPath: { path: rootfs } },
          command: ['/bin/sh', '-c', 'exec httpd -f -p 8080 -h /www'],
        },
      ],
    });
    victim = (await sandboxes.waitFor('victim', 'Running', phase('Running')))!;
    expect(await fetchIn(OUT_NS, 'http://10.206.0.2:8080/index.html')).toBe('victim-up\n');
    // The tap the agent made carries the owner's uid.
    expect(ipIn(POD_NS, '-d', 'link', 'show', 'dev', 'tap0_kata')).toContain(
      `alias kata.sandbox.io/uid=${victim.metadata.uid}`,
    );
  });

  it("another sandbox naming victim's namespace (same path or a second bind mount) → NetnsInUse; victim keeps its tap and traffic", async () => {
    const before = ipIn(POD_NS, '-o', 'link', 'show', 'dev', 'tap0_kata').split(':')[0];
    await sandboxes.create('thief', refusedSpec(`/run/netns/${POD_NS}`));
    await sandboxes.create('thief-alias', refusedSpec(`/run/netns/${ALIAS_NS}`));
    for (const [name, shown] of [
      ['thief', POD_NS],
      ['thief-alias', ALIAS_NS],
    ] as const) {
      const sb = (await sandboxes.waitFor(name, 'Failed', phase('Failed'), 120_000))!;
      expect(sb.status!.reason).toBe('NetnsInUse');
      expect(sb.status!.message).toContain(`spec.network.netnsPath "/run/netns/${shown}"`);
      expect(sb.status!.message).toContain('in use by another sandbox');
      expect(sb.status!.message).not.toContain(victim.metadata.uid!);
      expect(sb.status!.message).not.toContain('victim');
      expect(cond(sb, 'NetworkReady')).toMatchObject({ status: 'False', reason: 'NetnsInUse' });
      expect(await sandboxes.eventCount(name, 'NetnsInUse')).toBeGreaterThan(0);
      // Nothing of the refused sandbox is left on the host.
      expect(qemuPidsOf(sb.metadata.uid!)).toEqual([]);
      expect(existsSync(path.join(dirs.runDir, 'shared', sb.metadata.uid!))).toBe(false);
    }
    // The victim's tap is the same device, with its one redirect, and traffic still flows.
    expect(ipIn(POD_NS, '-o', 'link', 'show', 'dev', 'tap0_kata').split(':')[0]).toBe(before);
    expect(ipIn(POD_NS, '-o', 'link', 'show', 'type', 'tun').trim().split('\n')).toHaveLength(1);
    expect(await fetchIn(OUT_NS, 'http://10.206.0.2:8080/index.html')).toBe('victim-up\n');
    const now = await sandboxes.get('victim');
    expect(now?.status?.phase).toBe('Running');
    expect(cond(now, 'NetworkReady')?.status).toBe('True');
  });

  it("a namespace named like the agent's own (kata-*) → NetnsNotAllowed", async () => {
    await sandboxes.create('agentns', refusedSpec(`/run/netns/${AGENT_LIKE_NS}`));
    const sb = (await sandboxes.waitFor('agentns', 'Failed', phase('Failed'), 120_000))!;
    expect(sb.status!.reason).toBe('NetnsNotAllowed');
    expect(sb.status!.message).toContain('spec.network.netnsPath');
    expect(qemuPidsOf(sb.metadata.uid!)).toEqual([]);
    expect(ipIn(AGENT_LIKE_NS, '-o', 'link', 'show', 'type', 'tun').trim()).toBe('');
  });

  it("the victim's tap deleted on the host → NetworkReady False (NetworkLost) and an Event", async () => {
    ipIn(POD_NS, 'link', 'del', 'dev', 'tap0_kata');
    const sb = await sandboxes.waitFor(
      'victim',
      'NetworkLost',
      (s) => cond(s, 'NetworkReady')?.reason === 'NetworkLost',
      60_000,
    );
    expect(cond(sb, 'NetworkReady')).toMatchObject({ status: 'False' });
    expect(cond(sb, 'NetworkReady')?.message).toContain('tap0_kata');
    expect(cond(sb, 'Ready')?.status).toBe('False');
    expect(cond(sb, 'VMReady')?.status).toBe('True');
    await sandboxes.waitForEvent('victim', 'NetworkLost', 30_000);
  });

  it('delete: nothing left; the pod namespace stays, without our tap', async () => {
    const names = ['victim', 'thief', 'thief-alias', 'agentns'];
    for (const name of names) await sandboxes.delete(name);
    for (const name of names) {
      await sandboxes.waitFor(name, 'deleted', (sb) => sb === undefined, 120_000);
    }
    expect(qemuPidsOf(victim.metadata.uid!)).toEqual([]);
    expect(existsSync(path.join(dirs.stateDir, 'sandboxes', victim.metadata.uid!))).toBe(false);
    expect(ipIn(POD_NS, '-o', 'link', 'show', 'type', 'tun').trim()).toBe('');
    expect(ipIn(POD_NS, '-o', 'link', 'show', 'eth0')).toMatch(/eth0/);
  });
});

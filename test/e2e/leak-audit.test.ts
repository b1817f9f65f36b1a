// kata-leak-audit against a real node agent (real control plane, controller, QEMU): a running
// sandbox's objects belong to it; once deleted nothing is left; leftovers planted by this test (a
// stray run dir, a stray VM cgroup, a stray kata-<uid> network namespace) are reported by kind.
// The audit runs as operators run it here: hack/leak-audit with the node agent's roots, the live
// set listed from the API with the node agent's own identity.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { KataSandbox } from '../../src/crds/index.js';
import { cgroupHierarchies } from '../../src/node-agent/cgroups/cgroup-hierarchies.js';
import type { AuditReport } from '../../src/node-agent/leak-audit/classify.js';
import { readMountInfo } from '../../src/node-agent/storage/mountinfo.js';
import {
  adminKubeConfig,
  freshNamespace,
  REPO_ROOT,
  serviceAccountKubeConfigPath,
} from '../integration/cluster.js';
import {
  grantElectionLease,
  installControllerPrereqs,
  revokeElectionLease,
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
import { ensureImage } from './sandbox-vm.js';
import { phase, removeScratch, SandboxApi } from './sandbox-api.js';

jest.setTimeout(600_000);

const ELECTION_ID = `kata-controller-leak-${process.pid}`;
const NODE = `leak-${process.pid}`;
// VM cgroups of this run's own (other node agents on this machine use the default parent).
const CG_PARENT = `kata-leak-e2e-${process.pid}`;
// A uid no sandbox has: what the planted leftovers claim to belong to.
const FAKE = randomUUID();

let base: string;
let dirs: NodeAgentDirs;
let ns: string;
let sandboxes: SandboxApi;
let controller: RunningController | undefined;
let agent: RunningNodeAgent | undefined;
let agentKubeconfig: string;

interface AuditRun {
  code: number | null;
  report: AuditReport;
  stderr: string;
}

/** hack/leak-audit with this node agent's roots; JSON out. */
function audit(extra: readonly string[]): Promise<AuditRun> {
  const args = [
    ...['--state-dir', dirs.stateDir, '--run-dir', dirs.runDir, '--log-dir', dirs.logDir],
    ...['--vm-cgroup-parent', CG_PARENT, '--output', 'json'],
    // Other sessions' node agents share this machine's /run/netns: judge only what our roots know.
    ...['--host-wide', 'known'],
    ...extra,
  ];
  return new Promise((resolve, reject) => {
    execFile(
      path.join(REPO_ROOT, 'hack/leak-audit'),
      args,
      { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number | null }).code ?? null) : 0;
        try {
          resolve({ code, report: JSON.parse(stdout) as AuditReport, stderr });
        } catch {
          reject(new Error(`leak-audit exited ${code}: ${stderr}${stdout}`));
        }
      },
    );
  });
}

const fromApi = (): string[] => [
  ...['--live-from', 'api', '--kubeconfig', agentKubeconfig, '--node-name', NODE],
];

/** The leftovers as `kind uid` lines, sorted. */
const leftovers = (r: AuditReport): string[] =>
  r.kinds.flatMap((k) => k.leftovers.map((l) => `${l.kind} ${l.uid}`)).sort();

async function cgroupParents(): Promise<string[]> {
  return cgroupHierarchies(await readMountInfo(), '/sys/fs/cgroup').map((h) =>
    path.join(h.mountPoint, CG_PARENT),
  );
}

function ip(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: 10_000 }, (err, _o, stderr) =>
      err ? reject(new Error(`ip ${args.join(' ')}: ${stderr}`)) : resolve(),
    );
  });
}

async function removePlanted(): Promise<void> {
  if (existsSync(`/run/netns/kata-${FAKE}`)) await ip(['netns', 'del', `kata-${FAKE}`]);
  for (const parent of await cgroupParents()) {
    if (existsSync(path.join(parent, FAKE))) rmdirSync(path.join(parent, FAKE));
  }
  if (dirs) rmSync(path.join(dirs.runDir, 'sandboxes', FAKE), { recursive: true, force: true });
}

beforeAll(async () => {
  ensureImage();
  await installControllerPrereqs();
  await installNodeAgentRbac();
  await grantElectionLease(ELECTION_ID);
  ns = await freshNamespace('leak-audit-e2e');
  sandboxes = new SandboxApi(await adminKubeConfig(), ns, NODE);
  agentKubeconfig = await serviceAccountKubeConfigPath('kata-system', 'kata-node-agent');
  base = mkdtempSync('/tmp/leak-e2e-');
  const roots = path.join(base, 'roots');
  makeBusyboxRootfs(path.join(roots, 'busybox'));
  dirs = {
    stateDir: path.join(base, 'state'),
    runDir: path.join(base, 'run'),
    logDir: path.join(base, 'logs'),
    roots: [roots],
  };
  controller = await startController(`e2e-leak-audit-${process.pid}`, {
    namespace: ns,
    electionId: ELECTION_ID,
  });
  agent = await startNodeAgent(NODE, dirs, path.join(base, 'node-agent.log'), [
    '--vm-cgroup-parent',
    CG_PARENT,
  ]);
}, 30 * 60_000);

afterAll(async () => {
  await agent?.stop('SIGKILL');
  await controller?.stop();
  await revokeElectionLease(ELECTION_ID).catch(() => '');
  await removePlanted().catch(() => undefined);
  if (base) await removeScratch(base);
  // The parent the agent made; empty once its VMs are gone (a failed test's VM was killed above).
  for (const parent of await cgroupParents()) {
    try {
      rmdirSync(parent);
    } catch {
      // not there, or a VM's cgroup is still in it: left for the run's output to show
    }
  }
}, 120_000);

describe('kata-leak-audit (real node agent, real QEMU)', () => {
  let sb: KataSandbox;

  it('a running sandbox: its objects are its own, not leftovers; with it not live they are', async () => {
    await sandboxes.create('audited', {
      // sh ignores SIGTERM: a short grace keeps the delete short.
      terminationGracePeriodSeconds: 2,
      containers: [
        {
          name: 'idle',
          rootfs: { hostPath: { path: path.join(base, 'roots', 'busybox') } },
          command: ['/bin/sh', '-c', 'echo up; while true; do sleep 1; done'],
        },
      ],
    });
    sb = (await sandboxes.waitFor('audited', 'Running', phase('Running')))!;
    const uid = sb.metadata.uid!;

    const live = await audit(fromApi());
    expect({ code: live.code, leftovers: leftovers(live.report), stderr: live.stderr }).toEqual({
      code: 0,
      leftovers: [],
      stderr: '',
    });
    expect(live.report.live.uids).toEqual([uid]);
    const owned = Object.fromEntries(live.report.kinds.map((k) => [k.kind, k.owned]));
    for (const kind of ['qemu', 'state-dir', 'run-dir', 'share-dir', 'share-mount', 'log-dir']) {
      expect({ kind, owned: owned[kind] }).toEqual({ kind, owned: 1 });
    }
    expect(owned['cgroup']).toBe((await cgroupParents()).length);
    expect(owned['view-dir']).toBe(1);

    // The same host with nothing live: every one of those objects is a leftover of the uid.
    const none = await audit(['--live-uids', '']);
    expect(none.code).toBe(1);
    const kinds = new Set(leftovers(none.report).map((l) => l.split(' ')[0]));
    for (const kind of ['qemu', 'state-dir', 'run-dir', 'share-dir', 'share-mount', 'log-dir']) {
      expect(kinds).toContain(kind);
    }
    expect(leftovers(none.report).every((l) => l.endsWith(` ${uid}`))).toBe(true);
    const qemu = none.report.kinds.find((k) => k.kind === 'qemu')!.leftovers[0]!;
    expect(qemu.pid).toBe(sb.status!.vm!.pid);
  });

  it('deleted: nothing at all is left', async () => {
    await sandboxes.delete('audited');
    await sandboxes.waitFor('audited', 'deleted', (x) => x === undefined, 120_000);
    const after = await audit(fromApi());
    expect({ code: after.code, leftovers: leftovers(after.report) }).toEqual({
      code: 0,
      leftovers: [],
    });
    // A kind it could not look at anywhere (here: no CNI network, an image cache never used) is
    // said to be unchecked, never clean.
    for (const k of after.report.kinds) {
      if (k.checked.length === 0)
        expect({ kind: k.kind, status: k.status }).toEqual({ kind: k.kind, status: 'unchecked' });
    }
  });

  it('planted leftovers are reported by kind, and gone once the test removes them', async () => {
    mkdirSync(path.join(dirs.runDir, 'sandboxes', FAKE), { recursive: true });
    const parents = await cgroupParents();
    for (const parent of parents) mkdirSync(path.join(parent, FAKE));
    await ip(['netns', 'add', `kata-${FAKE}`]);
    try {
      const planted = await audit(fromApi());
      expect(planted.code).toBe(1);
      expect(leftovers(planted.report)).toEqual(
        [`run-dir ${FAKE}`, `netns ${FAKE}`, ...parents.map(() => `cgroup ${FAKE}`)].sort(),
      );
      const where = planted.report.kinds.flatMap((k) => k.leftovers.map((l) => l.where));
      expect(where).toEqual(
        expect.arrayContaining([
          path.join(dirs.runDir, 'sandboxes', FAKE),
          `/run/netns/kata-${FAKE}`,
          ...parents.map((p) => path.join(p, FAKE)),
        ]),
      );
      // Read-only: all of it is still there.
      expect(existsSync(`/run/netns/kata-${FAKE}`)).toBe(true);
      expect(parents.every((p) => existsSync(path.join(p, FAKE)))).toBe(true);
    } finally {
      await removePlanted();
    }
    const cleaned = await audit(fromApi());
    expect({ code: cleaned.code, leftovers: leftovers(cleaned.report) }).toEqual({
      code: 0,
      leftovers: [],
    });
  });
});

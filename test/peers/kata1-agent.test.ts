// The other direction: our node agent (and controller, on the real control plane) runs sandboxes
// whose guest runs the real Kata 1.x agent instead of ours: the variant guest image of
// kata1-agent-image.ts, chosen with the node agent's --guest-image-dir. Through the whole
// lifecycle: create, container output, exit codes, exec and signal (our AgentClient over the node
// agent's own per-sandbox channel), adoption after kill -9 of the node agent, delete (SIGTERM to
// the containers), and nothing left on the host.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AgentClient } from '../../src/agent/agent-client.js';
import { buildProcess } from '../../src/agent/process-spec.js';
import type { KataSandbox } from '../../src/crds/index.js';
import { isSameProcess, readProcStat } from '../../src/node-agent/hypervisor/qemu-process.js';
import { mountsUnder, readMountInfo } from '../../src/node-agent/storage/mountinfo.js';
import { adminKubeConfig, freshNamespace } from '../integration/cluster.js';
import {
  eventually,
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
} from '../e2e/node-agent-harness.js';
import { phase, qemuPidsOf, removeScratch, SandboxApi, waitForFile } from '../e2e/sandbox-api.js';
import { kata1GuestImage } from './kata1-agent-image.js';
import { kata1Agent } from './peer-binaries.js';

const AGENT = kata1Agent();
const RUNS = 'path' in AGENT;

jest.setTimeout(600_000);

const ELECTION_ID = `kata-controller-peers-${process.pid}`;
const NODE = `peers-${process.pid}`;
const SIGUSR1 = 10;
const CALL = { timeoutMs: 60_000 };

let base: string;
let dirs: NodeAgentDirs;
let rootfs: string;
let rwVol: string;
let guestImage: string;
let agentVersion = '';
let sandboxes: SandboxApi;
let controller: RunningController | undefined;
let agent: RunningNodeAgent | undefined;
let agentRuns = 0;

async function runAgent(): Promise<RunningNodeAgent> {
  agentRuns++;
  return startNodeAgent(NODE, dirs, path.join(base, `node-agent-${agentRuns}.log`), [
    '--guest-image-dir',
    guestImage,
  ]);
}

function container(name: string, script: string) {
  return {
    name,
    rootfs: { hostPath: { path: rootfs } },
    command: ['/bin/sh', '-c', script],
    volumeMounts: [{ name: 'rw', mountPath: '/rw' }],
  };
}

function logOf(sb: KataSandbox, containerName: string): string {
  const m = sb.metadata;
  return path.join(dirs.logDir, `${m.namespace}_${m.name}_${m.uid}`, `${containerName}.log`);
}

/** Our client on the node agent's own channel to the sandbox's guest (its serial bridge). */
function channelOf(sb: KataSandbox): AgentClient {
  return new AgentClient({
    socketPath: path.join(dirs.runDir, 'sandboxes', sb.metadata.uid!, 'agent.sock'),
  });
}

async function drain(client: AgentClient, cid: string, execId: string): Promise<string> {
  const chunks: Buffer[] = [];
  for (;;) {
    const b = await client.readStdout(cid, execId, 64 * 1024, CALL);
    if (b.length === 0) return Buffer.concat(chunks).toString('utf8');
    chunks.push(b);
  }
}

async function expectHostClean(uid: string): Promise<void> {
  expect(existsSync(path.join(dirs.stateDir, 'sandboxes', uid))).toBe(false);
  expect(existsSync(path.join(dirs.runDir, 'sandboxes', uid))).toBe(false);
  expect(existsSync(path.join(dirs.runDir, 'shared', uid))).toBe(false);
  expect(mountsUnder(await readMountInfo(), path.join(dirs.runDir, 'shared', uid))).toEqual([]);
  expect(qemuPidsOf(uid)).toEqual([]);
}

// The main sandbox: "main" runs until SIGTERM (which it records in the volume); "late" waits for
// a file the test writes after the node agent's restart, then prints and exits 5.
const MAIN_SCRIPT = [
  'echo hello-from-kata1',
  'echo to-stderr >&2',
  "trap 'echo got-sigterm > /rw/term.txt; exit 0' TERM",
  'while true; do sleep 1; done',
].join('; ');
// Two writes apart: the first may go to a read the killed node agent left pending in the 1.x
// agent (see docs/architecture.md, "a 1.x guest"); the second reaches the adopted node agent.
const LATE_SCRIPT =
  'while [ ! -e /rw/go ]; do sleep 1; done; echo late-1; sleep 3; echo late-2; exit 5';

beforeAll(async () => {
  if (!('path' in AGENT)) return;
  guestImage = kata1GuestImage(AGENT.path);
  const manifest = JSON.parse(readFileSync(path.join(guestImage, 'manifest.json'), 'utf8')) as {
    agentPath: string;
  };
  expect(manifest.agentPath).toBe('/usr/bin/kata-agent');
  await installControllerPrereqs();
  await installNodeAgentRbac();
  await grantElectionLease(ELECTION_ID);
  const ns = await freshNamespace('peers-kata1-agent');
  sandboxes = new SandboxApi(await adminKubeConfig(), ns, NODE);
  base = mkdtempSync('/tmp/peers-kata1-agent-');
  const roots = path.join(base, 'roots');
  rootfs = path.join(roots, 'busybox');
  rwVol = path.join(roots, 'rw');
  makeBusyboxRootfs(rootfs, ['rw']);
  mkdirSync(rwVol);
  dirs = {
    stateDir: path.join(base, 'state'),
    runDir: path.join(base, 'run'),
    logDir: path.join(base, 'logs'),
    roots: [roots],
  };
  controller = await startController(`peers-kata1-agent-${process.pid}`, {
    namespace: ns,
    electionId: ELECTION_ID,
  });
  agent = await runAgent();
  console.log(`scratch ${base}; node agent log ${agent.logFile}; image ${guestImage}`);
}, 30 * 60_000);

afterAll(async () => {
  await agent?.stop('SIGKILL');
  await controller?.stop();
  await revokeElectionLease(ELECTION_ID).catch(() => '');
  if (base) await removeScratch(base);
}, 120_000);

(RUNS ? describe : describe.skip)(
  'our node agent with the real Kata 1.x agent in the guest' +
    (RUNS ? '' : ` — skipped: ${(AGENT as { missing: string }).missing}`),
  () => {
    let mainSb: KataSandbox;

    it('creates both sandboxes; the guest answers as the 1.x agent; output reaches the logs', async () => {
      const vol = { name: 'rw', hostPath: { path: rwVol } };
      await sandboxes.create('ends', {
        volumes: [vol],
        containers: [container('bad', 'echo last-words; echo on-stderr >&2; exit 7')],
      });
      await sandboxes.create('main', {
        terminationGracePeriodSeconds: 10,
        volumes: [vol],
        containers: [container('main', MAIN_SCRIPT), container('late', LATE_SCRIPT)],
      });
      mainSb = (await sandboxes.waitFor('main', 'Running', phase('Running')))!;
      expect(mainSb.status!.vm!.pid).toEqual(expect.any(Number));
      const client = channelOf(mainSb);
      try {
        agentVersion = (await client.version(CALL)).agentVersion;
      } finally {
        client.close();
      }
      expect(agentVersion).not.toBe('');
      // The guest's PID 1 is the 1.x agent: its announce line on the console.
      const consoleLog = path.join(dirs.runDir, 'sandboxes', mainSb.metadata.uid!, 'console.log');
      expect(readFileSync(consoleLog, 'utf8')).toMatch(
        /announce: (?=.*name="kata-agent")(?=.*pid="1")/,
      );
      const log = await waitForFile(logOf(mainSb, 'main'), /to-stderr/);
      expect(log).toContain('hello-from-kata1\n');
    });

    it('a container that exits 7 → Failed/ContainerFailed with code 7 and its last lines; VM gone', async () => {
      const sb = await sandboxes.waitFor('ends', 'Failed', phase('Failed'));
      const st = sb!.status!;
      expect(st.reason).toBe('ContainerFailed');
      expect(st.message).toContain('container bad exited with code 7');
      expect(st.message).toContain('last-words');
      expect(st.message).toContain('on-stderr');
      expect(st.containers?.find((c) => c.name === 'bad')).toMatchObject({
        state: 'Exited',
        exitCode: 7,
      });
      await eventually('QEMU of "ends" gone', async () =>
        qemuPidsOf(sb!.metadata.uid!).length === 0 ? true : undefined,
      );
    });

    it('exec in a running container: its output, then its exact exit code', async () => {
      const client = channelOf(mainSb);
      try {
        const cmd = buildProcess({
          args: ['sh', '-c', 'echo exec-out; hostname; exit 3'],
          env: [{ name: 'PATH', value: '/bin' }],
          cwd: '/',
        });
        const execId = await client.execProcess('main', cmd.process, cmd.stringUser, CALL);
        // Output to its end first: the 1.x agent closes the pipes when WaitProcess returns.
        expect(await drain(client, 'main', execId)).toBe('exec-out\nmain\n');
        expect(await client.waitProcess('main', execId, CALL)).toBe(3);
      } finally {
        client.close();
      }
    });

    it('StatsContainer: the 1.x agent’s cgroup v1 figures decode (its "no limit" clamped)', async () => {
      const client = channelOf(mainSb);
      try {
        const stats = await client.statsContainer('main', CALL);
        const mem = stats.cgroupStats?.memoryStats?.usage;
        expect(mem?.usage).toBeGreaterThan(0);
        // 1.x reports v1's "no limit", 2^63 - 4096: wider than a JS number holds exactly.
        expect(mem?.limit).toBe(Number.MAX_SAFE_INTEGER);
        expect(stats.cgroupStats?.pidsStats?.current).toBeGreaterThan(0);
      } finally {
        client.close();
      }
    });

    it('a signal to an exec’d process reaches its trap, and its exit code comes back', async () => {
      const client = channelOf(mainSb);
      try {
        const cmd = buildProcess({
          args: ['sh', '-c', "trap 'exit 42' USR1; echo trapping; while true; do sleep 1; done"],
          env: [{ name: 'PATH', value: '/bin' }],
          cwd: '/',
        });
        const execId = await client.execProcess('main', cmd.process, cmd.stringUser, CALL);
        const first = await client.readStdout('main', execId, 64 * 1024, CALL);
        expect(first.toString()).toBe('trapping\n');
        await client.signalProcess('main', execId, SIGUSR1, CALL);
        expect(await client.waitProcess('main', execId, CALL)).toBe(42);
      } finally {
        client.close();
      }
    });

    it('kill -9 of the node agent → adopted on restart, same QEMU; a container ending afterwards is seen with its code', async () => {
      const pid = mainSb.status!.vm!.pid!;
      const startTime = readProcStat(pid)!.startTime;
      await agent!.stop('SIGKILL');
      expect(isSameProcess(pid, startTime)).toBe(true);
      agent = await runAgent();
      await waitForFile(agent.logFile, /adopted the running VM/, 120_000);
      const sb = await sandboxes.waitFor('main', 'Running', phase('Running'), 60_000);
      expect(sb!.status!.vm!.pid).toBe(pid);
      expect(qemuPidsOf(sb!.metadata.uid!)).toEqual([pid]);

      writeFileSync(path.join(rwVol, 'go'), '');
      const ended = await sandboxes.waitFor(
        'main',
        'late exited',
        (s) => s?.status?.containers?.find((c) => c.name === 'late')?.state === 'Exited',
        120_000,
      );
      expect(ended!.status!.containers?.find((c) => c.name === 'late')).toMatchObject({
        state: 'Exited',
        exitCode: 5,
      });
      expect(ended!.status!.containers?.find((c) => c.name === 'main')).toMatchObject({
        state: 'Running',
        restartCount: 0,
      });
      // Its output, written after the restart, reached the log through the adopted channel.
      await waitForFile(logOf(mainSb, 'late'), /late-2\n/);
      expect(isSameProcess(pid, startTime)).toBe(true);
    });

    it('delete: SIGTERM reaches the container, the VM is gone, nothing remains', async () => {
      const uid = mainSb.metadata.uid!;
      const pid = mainSb.status!.vm!.pid!;
      const startTime = readProcStat(pid)!.startTime;
      await sandboxes.delete('main');
      await sandboxes.waitFor('main', 'deleted', (sb) => sb === undefined, 120_000);
      expect(isSameProcess(pid, startTime)).toBe(false);
      expect(readFileSync(path.join(rwVol, 'term.txt'), 'utf8')).toBe('got-sigterm\n');
      await expectHostClean(uid);

      const ends = await sandboxes.get('ends');
      await sandboxes.delete('ends');
      await sandboxes.waitFor('ends', 'deleted', (sb) => sb === undefined, 60_000);
      await expectHostClean(ends!.metadata.uid!);
    });
  },
);

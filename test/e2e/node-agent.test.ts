// The node agent end to end: a real control plane, the real controller and node agent as
// processes with their own ServiceAccount identities (deploy/rbac), real QEMU (TCG here) booting
// the guest image, busybox containers over the 9p share. VMs are shared between checks: sandbox
// "main" carries the running/volume/adoption/graceful-delete checks; three more sandboxes cover
// the ends (Failed, Succeeded after restarts, VMExited), one never boots (HostPathNotAllowed).
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import type { KataSandbox } from '../../src/crds/index.js';
import { isSameProcess, readProcStat } from '../../src/node-agent/hypervisor/qemu-process.js';
import { readMountInfo, mountsUnder } from '../../src/node-agent/storage/mountinfo.js';
import { cgroupHierarchies } from '../../src/node-agent/cgroups/cgroup-hierarchies.js';
import { adminKubeConfig, freshNamespace } from '../integration/cluster.js';
import {
  eventually,
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
import { ensureImage } from './sandbox-vm.js';
import { phase, qemuPidsOf, removeScratch, SandboxApi, waitForFile } from './sandbox-api.js';
import { vmMemoryLimit } from '../../src/node-agent/hypervisor/vm-memory-limit.js';
import { TCG_TRANSLATION_CACHE_MIB } from '../../src/node-agent/hypervisor/qemu-args.js';

// Project-level testTimeout is not applied to tests run with --selectProjects: set it here.
jest.setTimeout(600_000);

/** This run's own controller election (the shared control plane may run other controllers). */
const ELECTION_ID = `kata-controller-e2e-${process.pid}`;

// Unique per run: node agents of other runs on the shared control plane never see these sandboxes.
const NODE = `e2e-${process.pid}`;

let base: string;
let dirs: NodeAgentDirs;
let rootfs: string;
let roVol: string;
let rwVol: string;
let ns: string;
let sandboxes: SandboxApi;
let controller: RunningController | undefined;
let agent: RunningNodeAgent | undefined;
let agentRuns = 0;
const t0 = Date.now();

function log(msg: string): void {
  console.log(`[+${Math.round((Date.now() - t0) / 1000)}s] ${msg}`);
}

async function runAgent(extraArgs: readonly string[] = []): Promise<RunningNodeAgent> {
  agentRuns++;
  return startNodeAgent(NODE, dirs, path.join(base, `node-agent-${agentRuns}.log`), extraArgs);
}

/** Where the node agent puts sandbox uid's VM in each cgroup hierarchy (its default parent). */
async function vmCgroupDirs(uid: string): Promise<string[]> {
  return cgroupHierarchies(await readMountInfo(), '/sys/fs/cgroup').map((h) =>
    path.join(h.mountPoint, 'kata-sandboxes', uid),
  );
}

function container(name: string, script: string, extra: object = {}) {
  return {
    name,
    rootfs: { hostPath: { path: rootfs } },
    command: ['/bin/sh', '-c', script],
    ...extra,
  };
}

const create = (name: string, spec: object) => sandboxes.create(name, spec);
const get = (name: string) => sandboxes.get(name);
const waitFor = (...a: Parameters<SandboxApi['waitFor']>) => sandboxes.waitFor(...a);
const eventCount = (name: string, reason: string) => sandboxes.eventCount(name, reason);
const waitForEvent = (name: string, reason: string) => sandboxes.waitForEvent(name, reason);

function logFileOf(sb: KataSandbox, containerName: string): string {
  const m = sb.metadata;
  return path.join(dirs.logDir, `${m.namespace}_${m.name}_${m.uid}`, `${containerName}.log`);
}

/** Nothing of sandbox `uid` is left on the host. */
async function expectHostClean(uid: string): Promise<void> {
  expect(existsSync(path.join(dirs.stateDir, 'sandboxes', uid))).toBe(false);
  expect(existsSync(path.join(dirs.runDir, 'sandboxes', uid))).toBe(false);
  expect(existsSync(path.join(dirs.runDir, 'shared', uid))).toBe(false);
  expect(mountsUnder(await readMountInfo(), path.join(dirs.runDir, 'shared', uid))).toEqual([]);
  expect(qemuPidsOf(uid)).toEqual([]);
  for (const dir of await vmCgroupDirs(uid)) expect(existsSync(dir)).toBe(false);
}

beforeAll(async () => {
  ensureImage();
  await installControllerPrereqs();
  await installNodeAgentRbac();
  await grantElectionLease(ELECTION_ID);
  ns = await freshNamespace('node-agent-e2e');
  sandboxes = new SandboxApi(await adminKubeConfig(), ns, NODE);

  base = mkdtempSync('/tmp/kna-e2e-');
  const roots = path.join(base, 'roots');
  rootfs = path.join(roots, 'busybox');
  roVol = path.join(roots, 'ro');
  rwVol = path.join(roots, 'rw');
  makeBusyboxRootfs(rootfs, ['ro', 'rw']);
  mkdirSync(roVol);
  mkdirSync(rwVol);
  writeFileSync(path.join(roVol, 'hello.txt'), 'read-only content\n');
  dirs = {
    stateDir: path.join(base, 'state'),
    runDir: path.join(base, 'run'),
    logDir: path.join(base, 'logs'),
    roots: [roots],
  };
  controller = await startController(`e2e-node-agent-${process.pid}`, {
    namespace: ns,
    electionId: ELECTION_ID,
  });
  agent = await runAgent();
  log(`scratch ${base}; logs: ${agent.logFile}, controller ${controller.logFile}`);
}, 30 * 60_000);

afterAll(async () => {
  await agent?.stop('SIGKILL');
  await controller?.stop();
  await revokeElectionLease(ELECTION_ID).catch(() => '');
  // Whatever a failed test left: its VMs, mounts, files.
  if (base) await removeScratch(base);
}, 120_000);

// The main sandbox: a long-running container reading/writing volumes and trapping SIGTERM.
const MAIN_SCRIPT = [
  'echo hello-from-main',
  'echo kernel $(uname -r)',
  'cat /ro/hello.txt',
  '(echo x > /ro/denied) 2>/dev/null && echo ro-write-succeeded || echo ro-write-refused',
  // A tenant writing into its hostPath rootfs: allowed inside, into its own overlay upper layer.
  'echo pwned > /bin/pwned-by-tenant && cat /bin/pwned-by-tenant && echo rootfs-write-ok',
  // Root in the guest asking the 9p share for a set-ID file and a device node on the host.
  'touch /rw/suid && (chmod 4755 /rw/suid 2>/dev/null && echo suid-set || echo suid-refused)',
  '(mknod /rw/null c 1 3 2>/dev/null && echo mknod-made || echo mknod-refused)',
  'echo written-in-guest > /rw/out.txt && echo rw-write-ok',
  "trap 'echo got-sigterm > /rw/term.txt; exit 0' TERM",
  'while true; do sleep 1; done',
].join('; ');

describe('kata-node-agent (real control plane, real QEMU)', () => {
  let mainSb: KataSandbox;

  it('five sandboxes created at once all reach Running; the main one has vm, containers and its log', async () => {
    const vol = (name: string, p: string, readOnly: boolean) => ({
      name,
      hostPath: { path: p, readOnly },
    });
    await create('main', {
      terminationGracePeriodSeconds: 20,
      volumes: [vol('ro', roVol, true), vol('rw', rwVol, false)],
      containers: [
        container('main', MAIN_SCRIPT, {
          volumeMounts: [
            { name: 'ro', mountPath: '/ro', readOnly: true },
            { name: 'rw', mountPath: '/rw' },
          ],
        }),
      ],
    });
    await create('ends-failed', {
      restartPolicy: 'Never',
      containers: [
        // The sleeps let all three be seen running together (the Ready Event) before they end:
        // under TCG on a loaded host their starts can lie seconds apart, hence 30 s, not less.
        container('ok', 'echo fine; sleep 30; exit 0'),
        container('bad', 'echo line-one; echo line-two; echo last-words >&2; sleep 30; exit 2'),
        // On a terminal: its output, carriage returns included, is the log.
        container('term', 'tty; echo on-a-terminal; sleep 30', { tty: true }),
      ],
    });
    await create('restarts', {
      restartPolicy: 'OnFailure',
      volumes: [vol('rw', rwVol, false)],
      containers: [
        container(
          'flaky',
          'n=$(cat /rw/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > /rw/count; echo attempt $n; sleep 2; [ $n -ge 3 ]',
          { volumeMounts: [{ name: 'rw', mountPath: '/rw' }] },
        ),
      ],
    });
    await create('vm-killed', { containers: [container('idle', 'while true; do sleep 1; done')] });
    // Debian's stock kernel instead of the default one made for the job.
    await create('idle', {
      terminationGracePeriodSeconds: 2,
      vm: { kernel: 'debian' },
      containers: [container('idle', 'echo kernel $(uname -r); while true; do sleep 1; done')],
    });

    const sb = await waitFor('main', 'Running', phase('Running'));
    mainSb = sb as KataSandbox;
    log('main Running');
    const st = mainSb.status!;
    expect(st.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(st.vm?.pid).toBeGreaterThan(0);
    expect(['tcg', 'kvm']).toContain(st.vm?.accelerator);
    expect(st.vm?.bootMillis).toBeGreaterThan(0);
    expect(st.vm?.startedAt).toBeTruthy();
    expect(st.network).toEqual({ interfaces: [], routes: [] });
    expect(st.containers).toEqual([
      expect.objectContaining({ name: 'main', state: 'Running', restartCount: 0 }),
    ]);
    expect(isSameProcess(st.vm!.pid!, readProcStat(st.vm!.pid!)?.startTime ?? -1)).toBe(true);
    // The VM runs in its own cgroup of every hierarchy, outside the node agent's, limited to the
    // guest's 512 MiB plus QEMU's 256 MiB overhead (the defaults).
    const cgroupDirs = await vmCgroupDirs(mainSb.metadata.uid!);
    for (const dir of cgroupDirs) {
      expect(readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim().split('\n')).toEqual([
        String(st.vm!.pid),
      ]);
    }
    const memory = cgroupDirs.find((d) => existsSync(path.join(d, 'memory.limit_in_bytes')));
    if (memory) {
      // Guest + QEMU overhead, and the translation cache under TCG.
      const limit = vmMemoryLimit(512, 256, st.vm!.accelerator ?? 'tcg', TCG_TRANSLATION_CACHE_MIB);
      expect(Number(readFileSync(path.join(memory, 'memory.limit_in_bytes'), 'utf8'))).toBe(
        limit.totalMiB * 1024 * 1024,
      );
      const peak = Number(readFileSync(path.join(memory, 'memory.max_usage_in_bytes'), 'utf8'));
      log(`main's VM cgroup peak memory after boot: ${Math.round(peak / 1024 / 1024)} MiB`);
    }
    const text = await waitForFile(logFileOf(mainSb, 'main'), /rw-write-ok/);
    expect(text).toContain('hello-from-main');
    // The default kernel is the one made for the job (guest/kernel/guest.config's LOCALVERSION).
    expect(text).toMatch(/kernel \S+-kata-guest\n/);
    for (const name of ['main', 'ends-failed', 'restarts', 'vm-killed', 'idle']) {
      await waitForEvent(name, 'Ready');
    }
    const idle = (await get('idle'))!;
    expect(await waitForFile(logFileOf(idle, 'idle'), /kernel /)).toMatch(/kernel \S+-amd64\n/);
    // Their roots, as the guest's init saw them: the default kernel's read-only erofs drive, and
    // the initramfs (rootfs) the stock kernel needs for its modules.
    const rootOf = (sb: KataSandbox): string =>
      /starting kata-guest-agent [^\n]*\(root (\w+)\)/.exec(
        readFileSync(path.join(dirs.runDir, 'sandboxes', sb.metadata!.uid!, 'console.log'), 'utf8'),
      )?.[1] ?? 'not found';
    expect(rootOf(mainSb)).toBe('erofs');
    expect(rootOf(idle)).toBe('rootfs');
    log('all five reached Running');
  });

  it('a read-only volume is readable, not writable; a read-write one is, and the write shows on the host', async () => {
    const text = await waitForFile(logFileOf(mainSb, 'main'), /rw-write-ok/);
    expect(text).toContain('read-only content');
    expect(text).toContain('ro-write-refused');
    expect(existsSync(path.join(roVol, 'denied'))).toBe(false);
    expect(readFileSync(path.join(rwVol, 'out.txt'), 'utf8')).toBe('written-in-guest\n');
  });

  it('root in the guest cannot make a set-ID file or a device node on the host through 9p', async () => {
    const text = await waitForFile(logFileOf(mainSb, 'main'), /rw-write-ok/);
    expect(text).toContain('suid-refused');
    expect(text).toContain('mknod-refused');
    expect(statSync(path.join(rwVol, 'suid')).mode & 0o6000).toBe(0);
    expect(existsSync(path.join(rwVol, 'null'))).toBe(false);
  });

  it('a write into the hostPath rootfs succeeds in the guest and never reaches the host tree', async () => {
    const text = await waitForFile(logFileOf(mainSb, 'main'), /rw-write-ok/);
    expect(text).toContain('rootfs-write-ok');
    // Four other sandboxes run from the same host directory: it must be unchanged.
    expect(existsSync(path.join(rootfs, 'bin', 'pwned-by-tenant'))).toBe(false);
  });

  it('exit 2 → Failed/ContainerFailed with the exit code and last lines; exit 0 of the other recorded', async () => {
    const sb = await waitFor('ends-failed', 'Failed', phase('Failed'));
    const st = sb!.status!;
    expect(st.reason).toBe('ContainerFailed');
    expect(st.message).toContain('exited with code 2');
    expect(st.message).toContain('last-words');
    expect(st.message).toContain('line-two');
    const bad = st.containers?.find((c) => c.name === 'bad');
    expect(bad).toMatchObject({ state: 'Exited', exitCode: 2 });
    expect(bad?.finishedAt).toBeTruthy();
    expect(st.containers?.find((c) => c.name === 'ok')).toMatchObject({
      state: 'Exited',
      exitCode: 0,
    });
    // A container with tty: true ran on a terminal, and its output reached its log (kubelet's
    // format: time, stream, F for a full line; a line may keep the terminal's carriage return).
    expect(await waitForFile(logFileOf(sb as KataSandbox, 'term'), /on-a-terminal/)).toMatch(
      /^\S+ stdout F \/dev\/pts\/[0-9]+\r?\n\S+ stdout F on-a-terminal\r?\n/,
    );
    // The end frees the host: no VM, no mounts, but the state (with the end) stays until deletion.
    // QEMU is stopped after the status is written, so wait for it to go rather than for a fixed time.
    await eventually('QEMU of ends-failed gone', async () =>
      qemuPidsOf(sb!.metadata.uid!).length === 0 ? true : undefined,
    );
    expect(qemuPidsOf(sb!.metadata.uid!)).toEqual([]);
  });

  it('OnFailure restarts a failing container and counts; exit 0 at last → Succeeded', async () => {
    const sb = await waitFor('restarts', 'Succeeded', phase('Succeeded'));
    const flaky = sb!.status!.containers?.find((c) => c.name === 'flaky');
    expect(flaky).toMatchObject({ state: 'Exited', exitCode: 0, restartCount: 2 });
    expect(readFileSync(path.join(rwVol, 'count'), 'utf8').trim()).toBe('3');
  });

  it('kill -9 of the QEMU → Failed/VMExited with the console tail, host cleaned', async () => {
    const sb = await waitFor('vm-killed', 'Running', phase('Running'));
    const pid = sb!.status!.vm!.pid!;
    process.kill(pid, 'SIGKILL');
    const failed = await waitFor('vm-killed', 'Failed', phase('Failed'), 60_000);
    expect(failed!.status!.reason).toBe('VMExited');
    expect(failed!.status!.message).toMatch(/exited unexpectedly[\s\S]*console/);
    expect((failed!.status!.message ?? '').split('\n').length).toBeGreaterThan(3);
    const vmReady = failed!.status!.conditions?.find((c) => c.type === 'VMReady');
    expect(vmReady).toMatchObject({ status: 'False', reason: 'VMExited' });
    const uid = failed!.metadata.uid!;
    expect(existsSync(path.join(dirs.runDir, 'shared', uid))).toBe(false);
    expect(mountsUnder(await readMountInfo(), path.join(dirs.runDir, 'shared', uid))).toEqual([]);
    expect(qemuPidsOf(uid)).toEqual([]);
    for (const dir of await vmCgroupDirs(uid)) expect(existsSync(dir)).toBe(false);
  });

  it('a hostPath outside the allow-list → Failed/HostPathNotAllowed, nothing created', async () => {
    await create('escape', {
      volumes: [{ name: 'etc', hostPath: { path: '/etc' } }],
      containers: [
        container('c', 'cat /etc/shadow', { volumeMounts: [{ name: 'etc', mountPath: '/x' }] }),
      ],
    });
    const sb = await waitFor('escape', 'Failed', phase('Failed'), 60_000);
    expect(sb!.status!.reason).toBe('HostPathNotAllowed');
    expect(sb!.status!.message).toContain('spec.volumes[0].hostPath.path');
    await expectHostClean(sb!.metadata.uid!);
  });

  it('kill -9 of the node agent while a sandbox boots → it reaches Running once, with one QEMU', async () => {
    const created = await create('interrupted', {
      terminationGracePeriodSeconds: 2,
      containers: [container('idle', 'echo up; while true; do sleep 1; done')],
    });
    const uid = created.metadata.uid!;
    const deadline = Date.now() + 120_000;
    while (qemuPidsOf(uid).length === 0) {
      if (Date.now() > deadline) throw new Error('interrupted: no QEMU started in time');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await get('interrupted'))?.status?.phase).not.toBe('Running');
    const halfBooted = qemuPidsOf(uid);
    await agent!.stop('SIGKILL');
    log(`node agent killed while QEMU ${halfBooted.join(',')} booted`);
    agent = await runAgent();
    const sb = await waitFor('interrupted', 'Running', phase('Running'));
    const pid = sb!.status!.vm!.pid!;
    expect(qemuPidsOf(uid)).toEqual([pid]);
    expect(await eventCount('interrupted', 'Ready')).toBe(1);
    await waitForFile(logFileOf(sb!, 'idle'), /up/);
  });

  it('kill -9 of the node agent while the sandbox runs → adopted on restart, same QEMU, not rebooted', async () => {
    const pid = mainSb.status!.vm!.pid!;
    const startTime = readProcStat(pid)!.startTime;
    await agent!.stop('SIGKILL');
    expect(isSameProcess(pid, startTime)).toBe(true);
    agent = await runAgent();
    await waitForFile(agent.logFile, /adopted the running VM/, 120_000);
    const sb = await waitFor('main', 'Running', phase('Running'), 60_000);
    expect(sb!.status!.vm!.pid).toBe(pid);
    expect(isSameProcess(pid, startTime)).toBe(true);
    expect(sb!.status!.containers?.[0]).toMatchObject({ state: 'Running', restartCount: 0 });
    expect(qemuPidsOf(sb!.metadata.uid!)).toEqual([pid]);
  });

  it('delete: SIGTERM reaches the container, the finalizer holds until the VM is gone, nothing remains', async () => {
    const uid = mainSb.metadata.uid!;
    const pid = mainSb.status!.vm!.pid!;
    const startTime = readProcStat(pid)!.startTime;
    await sandboxes.delete('main');
    let sawTerminating = false;
    const deadline = Date.now() + 120_000;
    for (;;) {
      const sb = await get('main');
      if (!sb) break;
      if (sb.metadata.deletionTimestamp) {
        sawTerminating = true;
        expect(sb.metadata.finalizers).toContain('kata.sandbox.io/node-cleanup');
      }
      if (Date.now() > deadline) throw new Error('main was not deleted in time');
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(sawTerminating).toBe(true);
    // Gone from the API only after the VM was reaped.
    expect(isSameProcess(pid, startTime)).toBe(false);
    expect(readFileSync(path.join(rwVol, 'term.txt'), 'utf8')).toBe('got-sigterm\n');
    await expectHostClean(uid);
    expect(existsSync(logFileOf(mainSb, 'main'))).toBe(false);
  });

  it('deleting all the others (ended and running) leaves nothing', async () => {
    const uids: string[] = [];
    const names = ['ends-failed', 'restarts', 'vm-killed', 'idle', 'interrupted', 'escape'];
    for (const name of names) {
      uids.push((await get(name))!.metadata.uid!);
      await sandboxes.delete(name);
    }
    for (const name of names) {
      await waitFor(name, 'deleted', (sb) => sb === undefined, 60_000);
    }
    for (const uid of uids) await expectHostClean(uid);
    expect(readdirSync(path.join(dirs.stateDir, 'sandboxes'))).toEqual([]);
    log('all deleted');
  });

  it('a VM whose QEMU outgrows its cgroup → Failed/VMOutOfMemory naming the limit, host cleaned', async () => {
    // No room for QEMU's own memory: the cgroup's limit is the guest's 512 MiB (and the smallest
    // TCG translation cache), and the container asks the guest for more than it has, so QEMU
    // touches all of it.
    await agent!.stop('SIGTERM');
    agent = await runAgent(['--vm-memory-overhead-mib', '0', '--tcg-translation-cache-mib', '16']);
    const fill = 'dd if=/dev/zero bs=300M count=1 | sleep 600';
    await create('oom', {
      restartPolicy: 'Never',
      containers: [container('a', fill), container('b', fill)],
    });
    const sb = await waitFor('oom', 'Failed', phase('Failed'), 300_000);
    expect(sb!.status!.reason).toBe('VMOutOfMemory');
    expect(sb!.status!.message).toMatch(
      /killed by the kernel's OOM killer .*limit is (528|512) MiB \(512 MiB guest memory( \+ 16 MiB TCG translation cache)? \+ 0 MiB QEMU overhead/,
    );
    expect(sb!.status!.containers?.map((c) => c.reason)).toEqual([
      'VMOutOfMemory',
      'VMOutOfMemory',
    ]);
    const uid = sb!.metadata.uid!;
    for (const dir of await vmCgroupDirs(uid)) expect(existsSync(dir)).toBe(false);
    await sandboxes.delete('oom');
    await waitFor('oom', 'deleted', (x) => x === undefined, 60_000);
    await expectHostClean(uid);
  });
});

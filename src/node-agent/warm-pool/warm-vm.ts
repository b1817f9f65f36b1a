// One warm VM's life on the host: booted idle (its own run dir, empty share, network namespace
// and cgroup, named by its own uid; no container, no network, no user data), adopted by a
// restarted node agent, or destroyed with everything it had. Once a sandbox takes it, the
// sandbox's runtime owns all of that (teardown.ts).
import type { AgentConnection } from '../../agent/agent-connection.js';
import type { VmSpec } from '../../crds/index.js';
import { reconnectAgent } from '../runtime/adoption.js';
import { NETNS_RUN_DIR, sandboxNetnsName } from '../network/cni.js';
import { sandboxDirs } from '../runtime/sandbox-dirs.js';
import type { RunningVm } from '../hypervisor/qemu-process.js';
import { checkVmSpec, launchVm, type VmLaunchDeps } from '../runtime/vm-launch.js';
import type { WarmVmRecord, WarmVmStore } from './warm-vm-store.js';
import type { WarmShape } from '../../crds/warm-shape.js';
import path from 'node:path';

export interface WarmVmDeps extends VmLaunchDeps {
  store: WarmVmStore;
}

/** A warm VM that runs and whose agent answers. */
export interface RunningWarmVm {
  record: WarmVmRecord;
  vm: RunningVm;
  agent: AgentConnection;
}

export function newWarmVmRecord(
  runRoot: string,
  pool: { name: string; uid: string; shape: WarmShape },
  vmUid: string,
  now: Date,
): WarmVmRecord {
  const { runDir, shareDir } = sandboxDirs(runRoot, vmUid);
  return {
    vmUid,
    pool: pool.name,
    poolUid: pool.uid,
    shape: pool.shape,
    createdAt: now.toISOString(),
    runDir,
    shareDir,
    netnsName: sandboxNetnsName(vmUid),
  };
}

export function warmNetnsPath(rec: Pick<WarmVmRecord, 'netnsName'>): string {
  return path.join(NETNS_RUN_DIR, rec.netnsName);
}

const vmSpecOf = (s: WarmShape): VmSpec => ({
  vcpus: s.vcpus,
  memoryMiB: s.memoryMiB,
  kernel: s.kernel,
  accelerator: s.accelerator,
});

/** Boots the VM until its agent answers; on failure everything it made is removed. */
export async function bootWarmVm(
  deps: WarmVmDeps,
  rec: WarmVmRecord,
  signal: AbortSignal,
): Promise<RunningWarmVm> {
  const { host } = deps;
  // Recorded before anything is made: a crash from here on finds it at start-up.
  await deps.store.save(rec);
  try {
    const image = await checkVmSpec(host, vmSpecOf(rec.shape));
    await host.makeDir(rec.runDir, 0o700);
    await host.makeDir(rec.shareDir, 0o755);
    await host.addNetns(rec.netnsName);
    const { booted, qemu } = await launchVm(deps, {
      vmUid: rec.vmUid,
      role: 'warm',
      vm: vmSpecOf(rec.shape),
      image,
      runDir: rec.runDir,
      shareDir: rec.shareDir,
      netnsPath: warmNetnsPath(rec),
      signal,
    });
    rec.qemu = qemu;
    await deps.store.save(rec);
    return { record: rec, vm: booted.qemu, agent: booted.agent };
  } catch (err) {
    await destroyWarmVm(deps, rec);
    throw err;
  }
}

/** The warm VM a previous node agent booted, if that very QEMU runs and its agent answers. */
export async function adoptWarmVm(
  deps: WarmVmDeps,
  rec: WarmVmRecord,
): Promise<RunningWarmVm | undefined> {
  const saved = rec.qemu;
  if (!saved) return undefined;
  const vm = deps.host.adoptVm(saved.info, deps.log);
  if (!vm) return undefined;
  try {
    return { record: rec, vm, agent: await reconnectAgent(saved) };
  } catch (err) {
    deps.log.warn({ err, vmUid: rec.vmUid }, 'warm VM runs but cannot be adopted; stopping it');
    await destroyWarmVm(deps, rec, vm);
    return undefined;
  }
}

/** Stops the VM and removes all it had on the host, the record last. Best effort, each step. */
export async function destroyWarmVm(
  deps: WarmVmDeps,
  rec: WarmVmRecord,
  running?: RunningVm,
  agent?: AgentConnection,
): Promise<void> {
  const { host, log } = deps;
  await agent?.close().catch(() => {});
  const vm = running ?? (rec.qemu && host.adoptVm(rec.qemu.info, log));
  if (vm) {
    await vm.stop({ powerdownGraceMs: 0, quitGraceMs: 2_000, qmpTimeoutMs: 2_000 });
  } else {
    await host.killOrphanQemu(rec.runDir, log);
  }
  const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
    await fn().catch((err: unknown) => log.warn({ err, vmUid: rec.vmUid }, `${what} failed`));
  };
  await attempt('removing the warm VM cgroups', () => host.removeVmCgroups(rec.vmUid));
  await attempt('removing the warm VM netns', () => host.removeNetns(rec.netnsName));
  await attempt('removing the warm VM share', () => host.teardownShare(rec.shareDir, [], log));
  await attempt('removing the warm VM run dir', () => host.removeTree(rec.runDir));
  await deps.store.remove(rec.vmUid);
}

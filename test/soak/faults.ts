// The faults the soak injects, each healing itself (what was killed is started again) before it
// returns. Only processes this run started, or the plane this run's KATA_CP_DIR names.
import { spawn } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { KUBECONFIG_ENV } from '../integration/cluster.js';
import { eventually, kubectl } from '../integration/controller-harness.js';
import { killGuestAgent } from './guest-agent-kill.js';
import { faultSpanMs, type FaultPlan } from './plan.js';
import type { SoakStack } from './stack.js';
import { qemuPidsByUid } from './host.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FaultOutcome {
  /** What was done, for the log; `skipped` when there was nothing to hit. */
  what: string;
  skipped: boolean;
}

/**
 * Kills -9 one daemon of the plane (etcd or kube-apiserver) and starts it again with the same
 * command line, ports and data, as a supervisor would: hack/controlplane.sh `up` would make a new
 * plane.
 */
async function restartPlaneDaemon(name: 'apiserver' | 'etcd', downMs: number): Promise<string> {
  const state = path.dirname(process.env[KUBECONFIG_ENV] ?? '');
  const pidFile = path.join(state, `${name}.pid`);
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  process.kill(pid, 'SIGKILL');
  await eventually(`${name} ${pid} gone`, async () => {
    try {
      process.kill(pid, 0);
      return undefined;
    } catch {
      return true;
    }
  });
  await sleep(downMs);
  const log = openSync(path.join(state, 'logs', `${name}.log`), 'a');
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  writeFileSync(pidFile, `${child.pid}\n`);
  await eventually(
    `${name} ready again`,
    async () =>
      (await kubectl(['get', '--raw', '/readyz'], undefined, 5000)).includes('ok')
        ? true
        : undefined,
    120_000,
    500,
  );
  return `${name} ${pid} killed, ${child.pid} started after ${downMs} ms`;
}

/** A sandbox of the round the fault may hit. */
export interface FaultTarget {
  uid: string;
  name: string;
}

/**
 * A sandbox whose guest agent answers and one of whose containers runs (its rootfs is in the
 * guest: the killer runs on it), chosen by `target`; waits up to a minute for one.
 */
async function sandboxWithAgent(
  stack: SoakStack,
  live: () => FaultTarget[],
  target: number,
): Promise<{ t: FaultTarget; on: string } | undefined> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const up: { t: FaultTarget; on: string }[] = [];
    for (const t of live()) {
      const sb = await stack.api.get(t.name).catch(() => undefined);
      const agent = sb?.status?.conditions?.find((c) => c.type === 'AgentConnected');
      const ended = sb?.status?.phase === 'Succeeded' || sb?.status?.phase === 'Failed';
      const running = sb?.status?.containers?.find((c) => c.state === 'Running');
      if (agent?.status === 'True' && !ended && !sb?.metadata.deletionTimestamp && running) {
        up.push({ t, on: running.name });
      }
    }
    if (up.length > 0) return up[Math.min(up.length - 1, Math.floor(target * up.length))];
    await sleep(1000);
  }
  return undefined;
}

async function guestAgentKill(
  stack: SoakStack,
  fault: FaultPlan,
  live: () => FaultTarget[],
): Promise<FaultOutcome> {
  const found = await sandboxWithAgent(stack, live, fault.target);
  if (!found) return { what: 'no sandbox with a running container within 60 s', skipped: true };
  const { t, on } = found;
  const before = qemuPidsByUid([t.uid]).get(t.uid) ?? [];
  const how = await killGuestAgent(stack.dirs.runDir, t.uid, on).catch(
    (err: unknown) => `not started: ${String(err).slice(0, 200)}`,
  );
  // The guest's init powers the VM off once its agent is gone.
  let gone = false;
  for (let i = 0; i < 60 && !gone; i++) {
    gone = (qemuPidsByUid([t.uid]).get(t.uid) ?? []).every((p) => !before.includes(p));
    if (!gone) await sleep(1000);
  }
  return {
    what: `guest agent of ${t.name} (${t.uid}) killed from a container on ${on}'s rootfs (${how}); QEMU ${before} ${gone ? 'gone' : 'STILL RUNNING after 60 s'}`,
    skipped: how.startsWith('not started'),
  };
}

export async function injectFault(
  stack: SoakStack,
  fault: FaultPlan,
  live: () => FaultTarget[],
): Promise<FaultOutcome> {
  const liveUids = (): string[] => live().map((t) => t.uid);
  switch (fault.kind) {
    case 'none':
      return { what: 'no fault', skipped: false };
    case 'node-agent-kill': {
      const pid = await stack.kill('node agent');
      await sleep(fault.downMs);
      await stack.startAgent();
      return {
        what: `node agent ${pid} killed, restarted after ${fault.downMs} ms`,
        skipped: false,
      };
    }
    case 'controller-kill': {
      const pid = await stack.kill('controller');
      await sleep(fault.downMs);
      await stack.startController();
      return {
        what: `controller ${pid} killed, restarted after ${fault.downMs} ms`,
        skipped: false,
      };
    }
    case 'qemu-kill': {
      const pids = [...qemuPidsByUid(liveUids()).entries()].flatMap(([uid, ps]) =>
        ps.map((p) => ({ uid, pid: p })),
      );
      if (pids.length === 0) return { what: 'no QEMU running to kill', skipped: true };
      const t = pids[Math.min(pids.length - 1, Math.floor(fault.target * pids.length))]!;
      try {
        process.kill(t.pid, 'SIGKILL');
      } catch {
        return { what: `QEMU ${t.pid} of ${t.uid} was already gone`, skipped: true };
      }
      return { what: `QEMU ${t.pid} of ${t.uid} killed`, skipped: false };
    }
    case 'apiserver-restart':
      return { what: await restartPlaneDaemon('apiserver', fault.downMs), skipped: false };
    case 'etcd-restart':
      return { what: await restartPlaneDaemon('etcd', fault.downMs), skipped: false };
    case 'state-disk-full': {
      stack.fillState();
      try {
        await sleep(faultSpanMs(fault));
      } finally {
        stack.emptyState();
      }
      return { what: `state filesystem full for ${faultSpanMs(fault)} ms`, skipped: false };
    }
    case 'guest-agent-kill':
      return guestAgentKill(stack, fault, live);
    case 'cni-fail':
    case 'cni-hang': {
      const mode = fault.kind === 'cni-fail' ? 'fail' : 'hang';
      stack.cni.setMode(mode);
      try {
        await sleep(faultSpanMs(fault));
      } finally {
        stack.cni.setMode('ok');
      }
      return { what: `CNI plugin set to ${mode} for ${faultSpanMs(fault)} ms`, skipped: false };
    }
    case 'registry-stop': {
      const cut = stack.registry.gate.stop();
      let refused = 0;
      try {
        await sleep(faultSpanMs(fault));
      } finally {
        refused = stack.registry.gate.resume();
      }
      return {
        what: `registry stopped for ${faultSpanMs(fault)} ms (${cut} open connections cut, ${refused} refused)`,
        skipped: false,
      };
    }
  }
}

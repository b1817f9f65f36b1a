// The faults the soak injects, each healing itself (what was killed is started again) before it
// returns. Only processes this run started, or the plane this run's KATA_CP_DIR names.
import { spawn } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { KUBECONFIG_ENV } from '../integration/cluster.js';
import { eventually, kubectl } from '../integration/controller-harness.js';
import type { FaultPlan } from './plan.js';
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

export async function injectFault(
  stack: SoakStack,
  fault: FaultPlan,
  liveUids: () => string[],
): Promise<FaultOutcome> {
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
        await sleep(fault.downMs * 5);
      } finally {
        stack.emptyState();
      }
      return { what: `state filesystem full for ${fault.downMs * 5} ms`, skipped: false };
    }
  }
}

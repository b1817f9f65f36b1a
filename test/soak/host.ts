// What the soak reads of the host: the live QEMU processes of its sandboxes (one /proc scan), and
// kata-leak-audit's verdict with the live uids, run as operators run it (hack/leak-audit).
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { AuditReport } from '../../src/node-agent/leak-audit/classify.js';
import { readProcStat } from '../../src/node-agent/hypervisor/qemu-process.js';
import { REPO_ROOT } from '../integration/cluster.js';
import type { NodeAgentDirs } from '../e2e/node-agent-harness.js';

/** Live (not zombie) QEMU pids per uid, for the uids given (a QEMU names its sandbox's uid). */
export function qemuPidsByUid(uids: Iterable<string>): Map<string, number[]> {
  const wanted = [...uids];
  const out = new Map<string, number[]>(wanted.map((u) => [u, []]));
  if (wanted.length === 0) return out;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
    } catch {
      continue; // gone
    }
    if (!cmd.includes('qemu-system')) continue;
    const uid = wanted.find((u) => cmd.includes(u));
    if (uid && readProcStat(Number(p))?.state !== 'Z') out.get(uid)!.push(Number(p));
  }
  return out;
}

export interface LeakFinding {
  kind: string;
  uid: string;
  where: string;
}

export interface AuditVerdict {
  leftovers: LeakFinding[];
  /** Kinds it could look at nowhere. */
  unchecked: string[];
}

/** hack/leak-audit with the node agent's roots and the given live uids. */
export function leakAudit(
  dirs: NodeAgentDirs,
  cgroupParent: string,
  liveUids: readonly string[],
  /** The node agent's CNI flags (so host-local's allocations of its network are audited too). */
  cniArgs: readonly string[] = [],
): Promise<AuditVerdict> {
  const args = [
    ...['--state-dir', dirs.stateDir, '--run-dir', dirs.runDir, '--log-dir', dirs.logDir],
    ...['--vm-cgroup-parent', cgroupParent, '--output', 'json'],
    ...cniArgs,
    // Other sessions' node agents share the machine's /run/netns: judge what our roots know.
    ...['--host-wide', 'known'],
    ...['--live-uids', liveUids.join(',')],
  ];
  return new Promise((resolve, reject) => {
    execFile(
      path.join(REPO_ROOT, 'hack/leak-audit'),
      args,
      { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        let report: AuditReport;
        try {
          report = JSON.parse(stdout) as AuditReport;
        } catch {
          reject(new Error(`leak-audit failed (${String(err)}): ${stderr}${stdout}`));
          return;
        }
        resolve({
          leftovers: report.kinds.flatMap((k) =>
            k.leftovers.map((l) => ({ kind: l.kind, uid: l.uid, where: l.where })),
          ),
          unchecked: report.kinds.filter((k) => k.status === 'unchecked').map((k) => k.kind),
        });
      },
    );
  });
}

/**
 * What the node agent may have left in a namespace the soak made for a mode-netns sandbox, once
 * that sandbox is gone: an ingress qdisc (its tc redirects) on eth0, or a link other than the
 * soak's own veth pair and loopback (a tap).
 */
export function netnsLeftovers(netns: string): string[] {
  const run = (...args: string[]): string =>
    execFileSync(args[0]!, args.slice(1), { encoding: 'utf8', timeout: 10_000, stdio: 'pipe' });
  const out: string[] = [];
  const qdiscs = JSON.parse(
    run('tc', '-n', netns, '-j', 'qdisc', 'show', 'dev', 'eth0') || '[]',
  ) as {
    kind: string;
  }[];
  for (const q of qdiscs) if (q.kind === 'ingress') out.push(`ingress qdisc on eth0 in ${netns}`);
  const links = JSON.parse(run('ip', '-n', netns, '-j', 'link', 'show') || '[]') as {
    ifname: string;
  }[];
  for (const l of links) {
    if (!['lo', 'eth0', 'peer0'].includes(l.ifname)) out.push(`link ${l.ifname} in ${netns}`);
  }
  return out;
}

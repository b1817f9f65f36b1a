// What a cluster's `up` and the installed product may change on the host, read so that a test can
// compare before and after `down`: processes of the node, mounts and their propagation, cgroups,
// the sysctls the kubelet and bridge plugin set, directories, links, network namespaces and
// iptables rules.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Programs that only a cluster or a sandbox runs on this machine. */
const NODE_PROGRAMS = new Set([
  'kubelet',
  'containerd',
  'containerd-shim',
  'containerd-shim-runc-v2',
  'kube-proxy',
  'kube-scheduler',
  'kube-controller',
  'docker-registry',
  'pause',
  'qemu-system-x86',
  'kata-host-fs',
]);

export const HOST_DIRS = [
  '/var/lib/kubelet',
  '/var/log/pods',
  '/var/log/containers',
  '/run/containerd',
  '/run/kata-cluster',
  '/run/netns',
  '/var/lib/cni',
  '/run/kata-containers',
  '/var/lib/kata-node-agent',
  '/var/log/kata-sandboxes',
  '/var/lib/kata-rootfs',
  '/srv',
  '/etc/cni',
  '/opt/cni',
];

const SYSCTLS = [
  'vm/overcommit_memory',
  'kernel/panic',
  'kernel/panic_on_oops',
  'net/ipv4/ip_forward',
];

export interface HostSnapshot {
  processes: string[];
  mounts: string[];
  cgroups: string[];
  sysctls: string[];
  dirs: string[];
  links: string[];
  netns: string[];
  iptables: string[];
}

function processes(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (NODE_PROGRAMS.has(comm)) out.push(comm);
    } catch {
      // gone meanwhile
    }
  }
  return out.sort();
}

/** Mount points with their propagation (shared, slave or private). */
export function mountsOf(mountinfo: string): string[] {
  return mountinfo
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.split(' ');
      const sep = f.indexOf('-');
      const opt = f.slice(6, sep);
      const prop = opt.some((o) => o.startsWith('shared:'))
        ? 'shared'
        : opt.some((o) => o.startsWith('master:'))
          ? 'slave'
          : 'private';
      return `${f[4]} ${f[sep + 1]} ${prop}`;
    })
    .sort();
}

/**
 * Top-level cgroups of this machine's own process manager: one child per command it runs (this
 * test's tool calls, other sessions'), coming and going while the test runs. Nothing of a cluster
 * or of the product is ever made there.
 */
const FOREIGN_CGROUPS = new Set(['process_api']);

/** Every cgroup directory two levels deep in each hierarchy (where kata-cluster/ and kata-sandboxes/<uid> would be). */
function cgroups(): string[] {
  const out: string[] = [];
  const roots = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => ['cgroup', 'cgroup2'].includes(f[f.indexOf('-') + 1] ?? ''))
    .map((f) => f[4] ?? '');
  for (const root of roots) {
    for (const a of safeDirs(root)) {
      out.push(path.join(root, a));
      if (FOREIGN_CGROUPS.has(a)) continue;
      for (const b of safeDirs(path.join(root, a))) out.push(path.join(root, a, b));
    }
  }
  return out.sort();
}

function safeDirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    return [];
  }
}

export async function hostSnapshot(): Promise<HostSnapshot> {
  const links = (await execFileAsync('ip', ['-o', 'link', 'show'], { timeout: 10_000 })).stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => (l.split(': ')[1] ?? '').split('@')[0] ?? '')
    .sort();
  const iptables = (await execFileAsync('iptables-save', [], { timeout: 10_000 })).stdout
    .split('\n')
    // comments carry a date; chain lines carry packet counters
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ''))
    .sort();
  return {
    processes: processes(),
    mounts: mountsOf(readFileSync('/proc/self/mountinfo', 'utf8')),
    cgroups: cgroups(),
    sysctls: SYSCTLS.map((s) => `${s}=${readFileSync(`/proc/sys/${s}`, 'utf8').trim()}`),
    dirs: HOST_DIRS.filter((d) => existsSync(d)),
    links,
    netns: existsSync('/run/netns') ? readdirSync('/run/netns').sort() : [],
    iptables,
  };
}

/** The cgroup path of `pid` in the hierarchy of `controller` (v1), or in the unified one. */
export function cgroupOf(pid: number, controller: string): string | undefined {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const [, ctrls, p] = line.split(':');
    if (ctrls?.split(',').includes(controller)) return p;
  }
  return undefined;
}

/** Whether `pid` is alive and still the process it was (its start time, field 22 of stat). */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

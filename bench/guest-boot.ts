// Benchmark: guest boot and agent round trip on the real stack (QEMU, the guest image from
// `make guest`, the guest agent, virtio-serial + yamux, grpc-js). `make bench` and
// `make bench-guest` bundle this file with esbuild and run it with node from the repo root.
//   node guest-boot.mjs [boots=5] [checks=1000]
//   GUEST_IMAGE_DIR=<dir>  boot the image in <dir> (vmlinux or vmlinuz, initrd, rootfs.erofs)
//                          instead of ${XDG_CACHE_HOME:-~/.cache}/kata-sandbox-operator/guest/current
//   GUEST_CHECK_VMS=<n>    the Checks on each of a row's last n boots, pooled (default 3)
//   GUEST_COMPARE_KERNEL=<file>  also boot the initrd with this kernel, in the same run, as a
//                          further row
//   GUEST_COMPARE_PORT_RELAY=off  also boot the top-level row's way with the agent's port driven
//                          directly (KATA_AGENT_PORT_RELAY=off on the kernel command line, which
//                          the kernel hands to init's environment), in the same run, as a further
//                          row: kata-port-relay against the blocking port, per Check
// Rows, each lever added to the one before: Debian's stock kernel with the initrd on pc (the
// image's debian/, spec.vm.kernel: debian; the path before #18); the kernel made for the job
// with the same initrd; that kernel with the read-only erofs root drive (what a warm-pool VM
// boots); the same on microvm when the host's TSC rate is known (what a sandbox's own VM boots
// under the node agent's --machine-type auto: the top-level result; else the row before).
// Prints plain lines: per boot QEMU start → Health.Check answered, the guest's uptime when its
// init started the agent (from the console), QEMU's CPU time; then median/min/max, then p50/p99 of
// sequential Check calls over the serial+mux channel of each of the row's last GUEST_CHECK_VMS
// VMs, pooled, the guest's memory in use once its agent answers, with the host load; per row.
// Ends with one line `bench-result {json}`: the top-level row's figures, every row in `rows`.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, homedir, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import {
  chooseAccelerator,
  kvmBootProbe,
  type AcceleratorChoice,
} from '../src/node-agent/hypervisor/accelerator.js';
import { bootVm } from '../src/node-agent/hypervisor/boot.js';
import type { GuestRoot } from '../src/node-agent/hypervisor/guest-image.js';
import { hostTscKhz } from '../src/node-agent/hypervisor/host-tsc.js';
import type { MachineType, VmConfig } from '../src/node-agent/hypervisor/qemu-args.js';
import { cpuSeconds } from './proc-stats.js';

const BOOTS = Number(process.argv[2] ?? 5);
const CHECKS = Number(process.argv[3] ?? 1000);
// One VM's Checks follow its own JIT's warm-up (±20 % between VMs of one image): pooled over the
// row's last few VMs they say more than one VM's.
const CHECK_VMS = Math.max(1, Math.min(BOOTS, Number(process.env.GUEST_CHECK_VMS ?? 3)));
const IMAGE =
  process.env.GUEST_IMAGE_DIR ??
  path.join(
    process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'),
    'kata-sandbox-operator/guest/current',
  );

const ms = (n: number): string => `${n.toFixed(0)} ms`;

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? NaN;
}
const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);

/** "kata-guest-init: starting kata-guest-agent at uptime 2.31s" → 2.31 */
function agentStartUptime(consoleLog: string): number | undefined {
  const m = /starting kata-guest-agent at uptime ([0-9.]+)s/.exec(
    existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '',
  );
  return m ? Number(m[1]) : undefined;
}

/** The agent loader's console line: "code cache accepted (N bytes); read+compile M ms", or undefined. */
function loaderVerdict(consoleLog: string): string | undefined {
  const m = /kata-guest-agent-loader: ([^\r\n]+)/.exec(
    existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '',
  );
  return m?.[1];
}

/** The guest's uptime when the agent started serving its port (the agent's log line). */
function agentReadyUptime(consoleLog: string): number | undefined {
  const m = /"uptimeS":([0-9.]+)[^\n]*"msg":"serving the agent port"/.exec(
    existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '',
  );
  return m ? Number(m[1]) : undefined;
}

/** One way to boot: a row of the comparison. */
interface BootPath {
  label: string;
  kernel: string;
  root: GuestRoot;
  machine: MachineType;
  kernelParams?: readonly string[];
}

interface Row {
  label: string;
  kernel: string;
  root: 'initrd' | 'erofs';
  machine: MachineType;
  boot_median_s: number;
  boot_qemu_cpu_s: number;
  agent_start_uptime_s: number;
  /** Guest uptime when the agent serves its port (ready to answer). */
  agent_ready_uptime_s: number;
  /** Node's start + loading the agent + listening: per boot, ready − start uptime (median). */
  agent_start_to_ready_s: number;
  rpc_p50_ms: number;
  rpc_p99_ms: number;
  rpc_qemu_cpu_ms: number;
  /** MemTotal − MemAvailable in the guest once its agent answers (GetGuestDetails). */
  guest_mem_used_mib: number;
  load: number;
}

/** BOOTS boots the `p` way, CHECKS sequential Checks on the last one. */
async function measure(p: BootPath, accel: AcceleratorChoice, scratch: string): Promise<Row> {
  console.log(`-- ${p.label}: kernel ${p.kernel}`);
  const tscKhz = hostTscKhz();
  const boots: number[] = [];
  const bootCpus: number[] = [];
  const uptimes: number[] = [];
  const readyUptimes: number[] = [];
  const startToReady: number[] = [];
  const rtts: number[] = [];
  let rpcCpuSeconds = 0;
  let memUsedMiB = NaN;
  for (let i = 0; i < BOOTS; i++) {
    const dir = mkdtempSync(path.join(scratch, `vm${i}-`));
    mkdirSync(path.join(dir, 'shared'), { recursive: true });
    const grpcSocket = path.join(dir, 'agent.sock');
    const vm: VmConfig = {
      name: `bench-boot-${i}`,
      machine: p.machine,
      accelerator: accel.accelerator,
      ...(p.machine === 'microvm' && tscKhz !== undefined && { tscKhz }),
      vcpus: 1,
      memoryMiB: 512,
      kernel: p.kernel,
      ...p.root,
      console: { logFile: path.join(dir, 'console.log') },
      qmpSocket: path.join(dir, 'qmp.sock'),
      agentChannelSocket: path.join(dir, 'agent-channel.sock'),
      sharedDir: path.join(dir, 'shared'),
      pidFile: path.join(dir, 'qemu.pid'),
      ...(p.kernelParams && { kernelParams: p.kernelParams }),
    };
    const res = await bootVm({
      vm,
      waitFor: { kind: 'agent', grpcSocket, checkTimeoutMs: 5_000 },
      deadlineMs: 300_000,
      stderrLog: path.join(dir, 'qemu.log'),
    });
    const cpu = cpuSeconds(res.process.pid);
    const up = agentStartUptime(path.join(dir, 'console.log'));
    const ready = agentReadyUptime(path.join(dir, 'console.log'));
    const verdict = loaderVerdict(path.join(dir, 'console.log'));
    boots.push(res.bootMillis);
    bootCpus.push(cpu);
    if (up !== undefined) uptimes.push(up);
    if (ready !== undefined) readyUptimes.push(ready);
    if (up !== undefined && ready !== undefined) startToReady.push(ready - up);
    const s = (x: number | undefined): string => (x === undefined ? 'n/a' : `${x.toFixed(2)} s`);
    console.log(
      `boot ${i + 1}: QEMU start -> Check answered ${ms(res.bootMillis)}; guest uptime at agent start ` +
        `${s(up)}, agent serving its port ${s(ready)}; QEMU CPU ${cpu.toFixed(2)} s` +
        (verdict ? `; loader: ${verdict}` : ''),
    );
    try {
      if (i >= BOOTS - CHECK_VMS && res.agent) {
        const c = res.agent.client;
        const mem = (await c.guestDetails({ timeoutMs: 10_000 })).guestMemory;
        if (mem) memUsedMiB = (mem.totalBytes - mem.availableBytes) / (1024 * 1024);
        for (let k = 0; k < 20; k++) await c.check({ timeoutMs: 10_000 }); // warm-up
        const cpuBefore = cpuSeconds(res.process.pid);
        for (let k = 0; k < CHECKS; k++) {
          const t0 = performance.now();
          await c.check({ timeoutMs: 10_000 });
          rtts.push(performance.now() - t0);
        }
        // Per call, the guest's CPU (host-side QEMU time) is what TCG multiplies; stabler than wall.
        rpcCpuSeconds += cpuSeconds(res.process.pid) - cpuBefore;
      }
    } finally {
      await res.agent?.close();
      await res.process.stop({ powerdownGraceMs: 0, quitGraceMs: 5_000 });
    }
  }

  const rpcCpuMs = (rpcCpuSeconds * 1000) / rtts.length;
  const b = sorted(boots);
  const row: Row = {
    label: p.label,
    kernel: p.kernel,
    root: 'initrd' in p.root ? 'initrd' : 'erofs',
    machine: p.machine,
    boot_median_s: quantile(b, 0.5) / 1000,
    boot_qemu_cpu_s: quantile(sorted(bootCpus), 0.5),
    agent_start_uptime_s: quantile(sorted(uptimes), 0.5),
    agent_ready_uptime_s: quantile(sorted(readyUptimes), 0.5),
    agent_start_to_ready_s: quantile(sorted(startToReady), 0.5),
    rpc_p50_ms: quantile(sorted(rtts), 0.5),
    rpc_p99_ms: quantile(sorted(rtts), 0.99),
    rpc_qemu_cpu_ms: rpcCpuMs,
    guest_mem_used_mib: memUsedMiB,
    load: loadavg()[0] ?? NaN,
  };
  console.log(
    `boot (QEMU start -> agent Check answered), ${b.length} boots: median ${ms(quantile(b, 0.5))}, ` +
      `min ${ms(b[0] ?? NaN)}, max ${ms(b[b.length - 1] ?? NaN)}; ` +
      `QEMU CPU per boot median ${row.boot_qemu_cpu_s.toFixed(2)} s`,
  );
  if (uptimes.length > 0) {
    const u = sorted(uptimes);
    console.log(
      `guest uptime when init started the agent: median ${row.agent_start_uptime_s.toFixed(2)} s, ` +
        `min ${(u[0] ?? NaN).toFixed(2)} s, max ${(u[u.length - 1] ?? NaN).toFixed(2)} s`,
    );
  }
  if (readyUptimes.length > 0) {
    const u = sorted(readyUptimes);
    console.log(
      `guest uptime when the agent served its port: median ${row.agent_ready_uptime_s.toFixed(2)} s, ` +
        `min ${(u[0] ?? NaN).toFixed(2)} s, max ${(u[u.length - 1] ?? NaN).toFixed(2)} s; ` +
        `agent start -> serving its port median ${row.agent_start_to_ready_s.toFixed(2)} s`,
    );
  }
  console.log(
    `guest memory used after boot (MemTotal − MemAvailable): ${memUsedMiB.toFixed(0)} MiB`,
  );
  const r = sorted(rtts);
  console.log(
    `agent RPC round trip over serial+mux (Health.Check x${CHECKS} on each of ${r.length / CHECKS} VMs): p50 ${row.rpc_p50_ms.toFixed(2)} ms, ` +
      `p99 ${row.rpc_p99_ms.toFixed(2)} ms, max ${(r[r.length - 1] ?? NaN).toFixed(2)} ms; ` +
      `QEMU CPU per call ${rpcCpuMs.toFixed(2)} ms; load ${row.load.toFixed(2)}`,
  );
  return row;
}

async function main(): Promise<void> {
  const vmlinux = path.join(IMAGE, 'vmlinux');
  const kernel = existsSync(vmlinux) ? vmlinux : path.join(IMAGE, 'vmlinuz');
  const initrd = path.join(IMAGE, 'initrd');
  if (!existsSync(initrd)) throw new Error(`no guest image at ${IMAGE}: run make guest`);
  const rootDisk = path.join(IMAGE, 'rootfs.erofs');
  const compare = process.env.GUEST_COMPARE_KERNEL;
  if (compare && !existsSync(compare)) throw new Error(`GUEST_COMPARE_KERNEL=${compare}: no file`);
  const stock = ['vmlinux', 'vmlinuz']
    .map((f) => path.join(IMAGE, 'debian', f))
    .find((f) => existsSync(f));
  const accel = await chooseAccelerator('auto', kvmBootProbe({ kernel, timeoutMs: 5_000 }));
  const paths: BootPath[] = [];
  const fromInitrd = { initrd };
  if (stock) {
    paths.push({
      label: 'debian kernel, initrd, pc',
      kernel: stock,
      root: fromInitrd,
      machine: 'pc',
    });
  }
  paths.push({ label: 'default kernel, initrd, pc', kernel, root: fromInitrd, machine: 'pc' });
  let own = paths.length - 1;
  if (existsSync(rootDisk)) {
    const fromDrive = { rootDisk: { path: rootDisk, fsType: 'erofs' as const } };
    own = paths.length;
    paths.push({ label: 'default kernel, erofs root, pc', kernel, root: fromDrive, machine: 'pc' });
    // Under TCG microvm needs the host's TSC rate (machine-type.ts); the node agent falls back too.
    if (accel.accelerator === 'kvm' || hostTscKhz() !== undefined) {
      own = paths.length; // what a sandbox's own VM boots (--machine-type auto)
      paths.push({
        label: 'default kernel, erofs root, microvm',
        kernel,
        root: fromDrive,
        machine: 'microvm',
      });
    }
  }
  const relayOff = process.env.GUEST_COMPARE_PORT_RELAY;
  if (relayOff !== undefined && relayOff !== 'off') {
    throw new Error(`GUEST_COMPARE_PORT_RELAY=${relayOff}: only "off" is known`);
  }
  const top = paths[own];
  if (relayOff && top) {
    paths.push({
      ...top,
      label: `${top.label}, port relay off`,
      kernelParams: ['KATA_AGENT_PORT_RELAY=off'],
    });
  }
  if (compare) {
    paths.push({
      label: 'GUEST_COMPARE_KERNEL, initrd, pc',
      kernel: compare,
      root: fromInitrd,
      machine: 'pc',
    });
  }
  const scratch = mkdtempSync(path.join(tmpdir(), 'bench-guest-boot-'));
  console.log(
    `guest boot bench: accelerator ${accel.accelerator} (${accel.reason}); image ${IMAGE}; ` +
      `1 vCPU, 512 MiB; host ${cpus().length} cores, load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  const rows: Row[] = [];
  try {
    for (const p of paths) rows.push(await measure(p, accel, scratch));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log(
    '-- summary (median boot, QEMU CPU-s per boot, guest memory used, Check p50, QEMU CPU per Check)',
  );
  for (const r of rows) {
    console.log(
      `${r.label.padEnd(48)} ${r.boot_median_s.toFixed(2)} s  ${r.boot_qemu_cpu_s.toFixed(2)} CPU-s  ` +
        `${r.guest_mem_used_mib.toFixed(0)} MiB  ${r.rpc_p50_ms.toFixed(1)} ms  ` +
        `${r.rpc_qemu_cpu_ms.toFixed(1)} ms CPU  load ${r.load.toFixed(2)}`,
    );
  }
  console.log(
    `bench-result ${JSON.stringify({ accelerator: accel.accelerator, ...rows[own], rows: rows })}`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

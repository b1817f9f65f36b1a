// Benchmark: many consecutive boots of one machine-type variant through the node agent's boot path
// (bootVm: QEMU start → the guest agent's Health.Check answered), one VM at a time, each with a
// deadline; a boot that misses it is a hang, and the VM's state at the deadline is recorded before
// it is stopped (QMP query-status, `info cpus`, `info registers`, RIP as a kernel symbol, the
// console's last lines). `make bench-machine` bundles this file with esbuild and runs it.
//   node machine-boots.mjs [boots=200] [variant ...]      (default variant: microvm)
//   variants: pc, q35, microvm, microvm-notsc (without tsc_early_khz), microvm-bios (an
//             explicit -bios bios-microvm.bin), microvm-nolegacy (PIT, PIC, RTC off),
//             microvm-noacpi, microvm-nopic
//   GUEST_KERNEL=<vmlinux>   (default: `make guest-kernel`'s cache, kernel/current/vmlinux)
//   GUEST_IMAGE_DIR=<dir>    its initrd (default: `make guest`'s cache, guest/current)
//   BOOT_DEADLINE_S=<s>      per boot (default 60)
// Each VM has what a sandbox's has: the agent's virtio-serial port, the 9p share and a read-only
// virtio-blk drive. Prints a line per boot (wall, QEMU CPU-seconds, load), a summary per variant
// and ends with one line `bench-result {json}`: the first variant's figures at the top level
// (boots, hangs, boot_median_s, boot_qemu_cpu_s, load), every variant in `rows`.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BootError, bootVm } from '../src/node-agent/hypervisor/boot.js';
import { hostTscKhz } from '../src/node-agent/hypervisor/host-tsc.js';
import type {
  MachineType,
  MicrovmOptions,
  VmConfig,
} from '../src/node-agent/hypervisor/qemu-args.js';
import { QmpClient } from '../src/node-agent/hypervisor/qmp-client.js';
import { cpuSeconds } from './proc-stats.js';

interface Variant {
  machine: MachineType;
  microvm?: Partial<MicrovmOptions>;
  bios?: string;
  tsc: boolean;
}

const VARIANTS: Record<string, Variant> = {
  pc: { machine: 'pc', tsc: false },
  q35: { machine: 'q35', tsc: false },
  microvm: { machine: 'microvm', tsc: true },
  'microvm-notsc': { machine: 'microvm', tsc: false },
  'microvm-bios': { machine: 'microvm', tsc: true, bios: '/usr/share/qemu/bios-microvm.bin' },
  'microvm-nolegacy': {
    machine: 'microvm',
    tsc: true,
    microvm: { pit: false, pic: false, rtc: false },
  },
  'microvm-noacpi': { machine: 'microvm', tsc: true, microvm: { acpi: false } },
  'microvm-nopic': { machine: 'microvm', tsc: true, microvm: { pic: false } },
};

const BOOTS = Number(process.argv[2] ?? 200);
const NAMES = process.argv.slice(3).length > 0 ? process.argv.slice(3) : ['microvm'];
const DEADLINE_MS = Number(process.env.BOOT_DEADLINE_S ?? 60) * 1000;
const CACHE = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'),
  'kata-sandbox-operator',
);
const KERNEL = process.env.GUEST_KERNEL ?? path.join(CACHE, 'kernel/current/vmlinux');
const INITRD = path.join(
  process.env.GUEST_IMAGE_DIR ?? path.join(CACHE, 'guest/current'),
  'initrd',
);

const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);
const median = (xs: readonly number[]): number => {
  const s = sorted(xs);
  return s.length === 0 ? NaN : (s[Math.floor((s.length - 1) / 2)] ?? NaN);
};
const load = (): number => loadavg()[0] ?? NaN;

/** `nm -n` of the kernel, to name the function a stuck vCPU is in. */
async function kernelSymbols(): Promise<Array<[bigint, string]>> {
  try {
    const { stdout } = await promisify(execFile)('nm', ['-n', KERNEL], {
      timeout: 30_000,
      maxBuffer: 256 * 1024 * 1024,
    });
    return stdout
      .split('\n')
      .map((l) => l.split(' '))
      .filter((f) => f.length === 3 && /^[tTwW]$/.test(f[1] ?? ''))
      .map((f) => [BigInt(`0x${f[0]}`), f[2] ?? ''] as [bigint, string]);
  } catch {
    return [];
  }
}

function symbolOf(symbols: Array<[bigint, string]>, rip: bigint): string {
  let lo = 0;
  let hi = symbols.length - 1;
  let best: [bigint, string] | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = symbols[mid] as [bigint, string];
    if (s[0] <= rip) {
      best = s;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best ? `${best[1]}+0x${(rip - best[0]).toString(16)}` : 'unknown';
}

interface HangReport {
  boot: number;
  status?: unknown;
  cpus?: string;
  rip?: string;
  symbol?: string;
  consoleTail: string[];
  error: string;
}

/** What the VM is doing a moment before its deadline (it is still running then). */
async function inspect(
  qmpSocket: string,
  symbols: Array<[bigint, string]>,
): Promise<Omit<HangReport, 'boot' | 'consoleTail' | 'error'>> {
  const qmp = await QmpClient.connect(qmpSocket, { timeoutMs: 3_000 });
  try {
    const hmp = (cmd: string): Promise<string> =>
      qmp.execute<string>('human-monitor-command', { 'command-line': cmd }, { timeoutMs: 3_000 });
    const status = await qmp.queryStatus({ timeoutMs: 3_000 });
    const cpus = (await hmp('info cpus')).trim();
    const regs = await hmp('info registers');
    const m = /RIP=([0-9a-f]+)/.exec(regs);
    const rip = m?.[1];
    return {
      status,
      cpus,
      ...(rip && { rip, symbol: symbolOf(symbols, BigInt(`0x${rip}`)) }),
    };
  } finally {
    qmp.close();
  }
}

interface Row {
  variant: string;
  machine: string;
  boots: number;
  hangs: number;
  boot_median_s: number;
  boot_qemu_cpu_s: number;
  boot_qemu_cpu_max_s: number;
  /** The guest's uptime when its init started the agent (kernel + init, from the console). */
  agent_start_uptime_s: number;
  load: number;
  hang_reports: HangReport[];
}

async function run(
  name: string,
  v: Variant,
  scratch: string,
  tscKhz: number | undefined,
  symbols: Array<[bigint, string]>,
): Promise<Row> {
  const walls: number[] = [];
  const cpuS: number[] = [];
  const loads: number[] = [];
  const uptimes: number[] = [];
  const hangs: HangReport[] = [];
  const drive = path.join(scratch, 'drive.img');
  if (!existsSync(drive)) writeFileSync(drive, Buffer.alloc(1024 * 1024));
  console.log(`-- ${name}: ${BOOTS} boots, deadline ${DEADLINE_MS / 1000} s each`);
  for (let i = 0; i < BOOTS; i++) {
    const dir = mkdtempSync(path.join(scratch, `vm-`));
    mkdirSync(path.join(dir, 'shared'));
    const vm: VmConfig = {
      name: `bench-machine-${i}`,
      machine: v.machine,
      ...(v.microvm && { microvm: v.microvm }),
      ...(v.bios && { bios: v.bios }),
      accelerator: 'tcg',
      ...(v.tsc && tscKhz !== undefined && { tscKhz }),
      vcpus: 1,
      memoryMiB: 512,
      kernel: KERNEL,
      initrd: INITRD,
      console: { logFile: path.join(dir, 'console.log') },
      qmpSocket: path.join(dir, 'qmp.sock'),
      agentChannelSocket: path.join(dir, 'agent-channel.sock'),
      sharedDir: path.join(dir, 'shared'),
      drives: [{ path: drive, serialId: 'bench', readOnly: true, cache: 'writeback' }],
      pidFile: path.join(dir, 'qemu.pid'),
    };
    // Inspect a stuck VM just before bootVm's deadline stops it.
    let report: Omit<HangReport, 'boot' | 'consoleTail' | 'error'> | undefined;
    let inspecting: Promise<void> | undefined;
    const timer = setTimeout(() => {
      inspecting = inspect(vm.qmpSocket, symbols).then(
        (r) => void (report = r),
        (e: unknown) => void (report = { status: `inspect failed: ${(e as Error).message}` }),
      );
    }, DEADLINE_MS - 4_000);
    try {
      const res = await bootVm({
        vm,
        waitFor: { kind: 'agent', grpcSocket: path.join(dir, 'agent.sock'), checkTimeoutMs: 5_000 },
        deadlineMs: DEADLINE_MS,
        stderrLog: path.join(dir, 'qemu.log'),
      });
      clearTimeout(timer);
      const cpu = cpuSeconds(res.process.pid);
      const up = /starting kata-guest-agent at uptime ([0-9.]+)s/.exec(
        readFileSync(vm.console.logFile, 'utf8'),
      );
      if (up) uptimes.push(Number(up[1]));
      walls.push(res.bootMillis / 1000);
      cpuS.push(cpu);
      loads.push(load());
      console.log(
        `${name} boot ${i + 1}: ${(res.bootMillis / 1000).toFixed(2)} s wall, ` +
          `QEMU CPU ${cpu.toFixed(2)} s, guest uptime at agent start ${up?.[1] ?? '?'} s, ` +
          `load ${load().toFixed(2)}`,
      );
      await res.agent?.close();
      await res.process.stop({ powerdownGraceMs: 0, quitGraceMs: 5_000 });
      rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      clearTimeout(timer);
      await inspecting;
      const consoleTail =
        err instanceof BootError
          ? err.consoleTail
          : existsSync(vm.console.logFile)
            ? readFileSync(vm.console.logFile, 'utf8').split('\n').slice(-20)
            : [];
      const hang: HangReport = {
        boot: i + 1,
        ...report,
        consoleTail,
        error: (err as Error).message.split('\n')[0] ?? '',
      };
      hangs.push(hang);
      console.log(
        `${name} boot ${i + 1}: HANG (${hang.error}); status ${JSON.stringify(hang.status)}; ` +
          `RIP ${hang.rip ?? '?'} ${hang.symbol ?? ''}; cpus ${hang.cpus ?? '?'}; ` +
          `console: ${consoleTail.slice(-3).join(' | ')}; files kept in ${dir}`,
      );
    }
  }
  const row: Row = {
    variant: name,
    machine: v.machine,
    boots: BOOTS,
    hangs: hangs.length,
    boot_median_s: median(walls),
    boot_qemu_cpu_s: median(cpuS),
    boot_qemu_cpu_max_s: Math.max(...cpuS),
    agent_start_uptime_s: median(uptimes),
    load: median(loads),
    hang_reports: hangs,
  };
  console.log(
    `${name}: ${walls.length}/${BOOTS} booted, ${hangs.length} hangs; median ${row.boot_median_s.toFixed(2)} s wall, ` +
      `QEMU CPU median ${row.boot_qemu_cpu_s.toFixed(2)} s (max ${row.boot_qemu_cpu_max_s.toFixed(2)} s); ` +
      `guest uptime at agent start median ${row.agent_start_uptime_s.toFixed(2)} s; ` +
      `median load ${row.load.toFixed(2)}`,
  );
  return row;
}

async function main(): Promise<void> {
  for (const n of NAMES) {
    if (!VARIANTS[n])
      throw new Error(`unknown variant ${n} (one of ${Object.keys(VARIANTS).join(', ')})`);
  }
  for (const f of [KERNEL, INITRD]) {
    if (!existsSync(f))
      throw new Error(`${f} does not exist: run make guest-kernel and make guest`);
  }
  const tscKhz = hostTscKhz();
  const symbols = await kernelSymbols();
  const scratch = mkdtempSync(path.join(tmpdir(), 'bench-machine-'));
  console.log(
    `machine boots bench: TCG, 1 vCPU, 512 MiB; kernel ${KERNEL}; initrd ${INITRD}; ` +
      `host TSC ${tscKhz ?? 'unknown'} kHz; load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  const rows: Row[] = [];
  let hangsKept = false;
  try {
    for (const n of NAMES) {
      const row = await run(n, VARIANTS[n] as Variant, scratch, tscKhz, symbols);
      hangsKept ||= row.hangs > 0;
      rows.push(row);
    }
  } finally {
    if (!hangsKept) rmSync(scratch, { recursive: true, force: true });
  }
  const first = rows[0] as Row;
  const { hang_reports: _, ...top } = first;
  console.log(`bench-result ${JSON.stringify({ ...top, rows })}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

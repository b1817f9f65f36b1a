// Benchmark: the 9p share's security model, security_model=none (what the node agent uses) against
// mapped-xattr (the guest's ownership and modes kept in user.virtfs.* xattrs, never applied to
// the host file). Real QEMU, the guest image from `make guest`, the guest agent, a busybox
// container whose rootfs and /data are on the share. The rootfs uses hard links, not symlinks:
// mapped-xattr cannot read symlinks made on the host (docs/operations.md, "9p security model").
// `make bench` bundles this file with esbuild.
//   node ninep.mjs [rounds=2] [files=300]
// Per round and model: QEMU start → agent answering and QEMU's CPU seconds by then; then a
// container writing `files` small files in /data, one reading them back (and listing them), one
// doing nothing (the container start cost inside both), each as wall time and QEMU CPU seconds.
// The mapped-xattr runs go through a tiny wrapper that rewrites only the -fsdev security option.
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { cpus, homedir, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { sharedDirStorage } from '../src/agent/storage.js';
import { chooseAccelerator, kvmBootProbe } from '../src/node-agent/hypervisor/accelerator.js';
import { bootTestVm, containerRequest, runContainer, vmConfig } from '../test/e2e/sandbox-vm.js';
import { cpuSeconds } from './proc-stats.js';

const ROUNDS = Number(process.argv[2] ?? 2);
const FILES = Number(process.argv[3] ?? 300);
const IMAGE = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'),
  'kata-sandbox-operator/guest/current',
);
const MAPPED = 'security_model=mapped-xattr,fmode=0600,dmode=0700';

/** busybox with its applets as hard links (mapped-xattr serves those; host symlinks it cannot). */
function hardlinkRootfs(dir: string): void {
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc', 'data']) {
    mkdirSync(path.join(dir, d), { recursive: true });
  }
  copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'));
  for (const a of ['sh', 'ls', 'cat', 'true']) {
    linkSync(path.join(dir, 'bin/busybox'), path.join(dir, 'bin', a));
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? NaN;
};
const range = (xs: number[], unit: string, digits = 0): string =>
  `median ${median(xs).toFixed(digits)} ${unit} (min ${Math.min(...xs).toFixed(digits)}, max ${Math.max(...xs).toFixed(digits)})`;

interface Figures {
  bootMs: number;
  bootCpu: number;
  writeMs: number;
  writeCpu: number;
  readMs: number;
  readCpu: number;
  noopMs: number;
  noopCpu: number;
}

async function oneRound(
  model: 'none' | 'mapped-xattr',
  n: number,
  scratch: string,
  image: { kernel: string; initrd: string },
  accelerator: 'kvm' | 'tcg',
  wrapper: string,
): Promise<Figures> {
  const dir = path.join(scratch, `${model}-${n}`);
  const shared = path.join(dir, 'shared');
  hardlinkRootfs(path.join(shared, 'c', 'rootfs'));
  const vm = await bootTestVm(
    vmConfig(dir, `bench-9p-${n}`, image, { sharedDir: shared, accelerator }),
    dir,
    model === 'mapped-xattr' ? { launchPrefix: [wrapper] } : {},
  );
  try {
    const pid = vm.process.pid;
    const fsdev = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    if (!fsdev.includes(`security_model=${model}`)) {
      throw new Error(`QEMU does not run with security_model=${model}: ${fsdev}`);
    }
    const f: Partial<Figures> = { bootMs: vm.bootMillis, bootCpu: cpuSeconds(pid) };
    await vm.client.createSandbox(
      {
        sandboxId: `bench-9p-${n}`,
        hostname: 'bench',
        dns: { nameservers: [], searches: [] },
        storages: [sharedDirStorage()],
      },
      { timeoutMs: 60_000 },
    );
    // One container id (its rootfs is shared/c/rootfs), run once per workload.
    const run = async (what: string, script: string): Promise<[number, number]> => {
      const cpu0 = cpuSeconds(pid);
      const t0 = performance.now();
      const r = await runContainer(vm.client, containerRequest('c', script));
      const ms = performance.now() - t0;
      if (r.status !== 0) throw new Error(`${what}: exit ${r.status}: ${r.stderr}`);
      await vm.client.removeContainer('c', 10, { timeoutMs: 30_000 });
      return [ms, cpuSeconds(pid) - cpu0];
    };
    // Shell built-ins only (echo, read, while): the figures are the share's, not process starts.
    [f.noopMs, f.noopCpu] = await run('noop', 'true');
    [f.writeMs, f.writeCpu] = await run(
      'write',
      `i=0; while [ $i -lt ${FILES} ]; do echo "small file $i" > /data/f$i; i=$((i+1)); done`,
    );
    [f.readMs, f.readCpu] = await run(
      'read',
      'n=0; for x in /data/f*; do read -r l < "$x"; n=$((n+1)); done; ls -l /data > /dev/null; echo $n',
    );
    return f as Figures;
  } finally {
    await vm.close();
  }
}

async function main(): Promise<void> {
  const vmlinux = path.join(IMAGE, 'vmlinux');
  const kernel = existsSync(vmlinux) ? vmlinux : path.join(IMAGE, 'vmlinuz');
  const initrd = path.join(IMAGE, 'initrd');
  if (!existsSync(initrd)) throw new Error(`no guest image at ${IMAGE}: run make guest`);
  const accel = await chooseAccelerator('auto', kvmBootProbe({ kernel, timeoutMs: 5_000 }));
  const scratch = mkdtempSync(path.join(tmpdir(), 'bench-ninep-'));
  // Runs QEMU with the one -fsdev option rewritten; argv in, argv out, no parsing by a shell.
  const wrapper = path.join(scratch, 'qemu-9p-mapped-xattr');
  writeFileSync(wrapper, `#!/bin/bash\nexec "\${@/security_model=none/${MAPPED}}"\n`);
  chmodSync(wrapper, 0o755);
  console.log(
    `9p security model bench: accelerator ${accel.accelerator}; ${ROUNDS} round(s) per model, ` +
      `${FILES} files; 1 vCPU, 512 MiB; host ${cpus().length} cores, load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  const results: Record<string, Figures[]> = { none: [], 'mapped-xattr': [] };
  try {
    for (let n = 0; n < ROUNDS; n++) {
      // Alternate the order so drift in the machine's load hits both models alike.
      const order =
        n % 2 === 0 ? (['none', 'mapped-xattr'] as const) : (['mapped-xattr', 'none'] as const);
      for (const model of order) {
        const f = await oneRound(model, n, scratch, { kernel, initrd }, accel.accelerator, wrapper);
        results[model]!.push(f);
        console.log(
          `${model.padEnd(12)} round ${n + 1}: boot ${f.bootMs} ms (QEMU CPU ${f.bootCpu.toFixed(2)} s); ` +
            `write ${FILES}: ${f.writeMs.toFixed(0)} ms (CPU ${f.writeCpu.toFixed(2)} s); ` +
            `read ${FILES}: ${f.readMs.toFixed(0)} ms (CPU ${f.readCpu.toFixed(2)} s); ` +
            `empty container: ${f.noopMs.toFixed(0)} ms (CPU ${f.noopCpu.toFixed(2)} s)`,
        );
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  for (const [model, fs] of Object.entries(results)) {
    const col = (k: keyof Figures) => fs.map((f) => f[k]);
    console.log(`${model}:`);
    console.log(
      `  boot            ${range(col('bootMs'), 'ms')}, QEMU CPU ${range(col('bootCpu'), 's', 2)}`,
    );
    console.log(
      `  write ${String(FILES).padEnd(9)} ${range(col('writeMs'), 'ms')}, QEMU CPU ${range(col('writeCpu'), 's', 2)}`,
    );
    console.log(
      `  read ${String(FILES).padEnd(10)} ${range(col('readMs'), 'ms')}, QEMU CPU ${range(col('readCpu'), 's', 2)}`,
    );
    console.log(
      `  empty container ${range(col('noopMs'), 'ms')}, QEMU CPU ${range(col('noopCpu'), 's', 2)}`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

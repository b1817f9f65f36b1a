// Measurement: the smallest VM memory (MiB) the guest image boots in, up to the guest agent
// answering Health.Check over serial+mux. It bisects between a size that fails and one that
// boots, booting the real image (QEMU, the image from `make guest`) once per probe with the root
// the node agent gives that kernel (the default kernel: the erofs root drive; debian: the
// initrd), and prints the image's sizes next to the result: the figures behind the CRD's
// spec.vm.memoryMiB minimum and the node agent's per-image check (docs/operations.md, "Guest memory").
//   npx esbuild bench/guest-min-memory.ts --bundle --platform=node --format=esm \
//     --outfile=/tmp/gmm.mjs && node /tmp/gmm.mjs [kernel=default] [lowMiB=64] [highMiB=512] [stepMiB=8]
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AgentConnection } from '../src/agent/agent-connection.js';
import { chooseAccelerator, kvmBootProbe } from '../src/node-agent/hypervisor/accelerator.js';
import { bootVm } from '../src/node-agent/hypervisor/boot.js';
import {
  guestRootFor,
  resolveGuestImage,
  type GuestRoot,
} from '../src/node-agent/hypervisor/guest-image.js';
import type { VmConfig } from '../src/node-agent/hypervisor/qemu-args.js';

const KERNEL = process.argv[2] ?? 'default';
const LOW = Number(process.argv[3] ?? 64);
const HIGH = Number(process.argv[4] ?? 512);
const STEP = Number(process.argv[5] ?? 8);
const MiB = 1024 * 1024;

async function boots(
  memoryMiB: number,
  scratch: string,
  kernel: string,
  root: GuestRoot,
  accel: 'kvm' | 'tcg',
) {
  const dir = path.join(scratch, `vm-${memoryMiB}`);
  mkdirSync(path.join(dir, 'shared'), { recursive: true });
  const grpcSocket = path.join(dir, 'agent.sock');
  const vm: VmConfig = {
    name: `min-memory-${memoryMiB}`,
    machine: 'pc',
    accelerator: accel,
    vcpus: 1,
    memoryMiB,
    kernel,
    ...root,
    console: { logFile: path.join(dir, 'console.log') },
    qmpSocket: path.join(dir, 'qmp.sock'),
    agentChannelSocket: path.join(dir, 'agent-channel.sock'),
    sharedDir: path.join(dir, 'shared'),
    pidFile: path.join(dir, 'qemu.pid'),
  };
  let agent: AgentConnection | undefined;
  try {
    const res = await bootVm({
      vm,
      waitFor: { kind: 'agent', grpcSocket, checkTimeoutMs: 5_000 },
      deadlineMs: 120_000,
      stderrLog: path.join(dir, 'qemu.log'),
    });
    agent = res.agent;
    await res.process.stop({ powerdownGraceMs: 0, quitGraceMs: 5_000 });
    return { ok: true, detail: `agent answered after ${res.bootMillis} ms` };
  } catch (err) {
    const log = path.join(dir, 'console.log');
    const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-3) : [];
    return { ok: false, detail: `${(err as Error).message.slice(0, 120)} | ${tail.join(' / ')}` };
  } finally {
    await agent?.close();
  }
}

async function main(): Promise<void> {
  const image = resolveGuestImage();
  const kernel = image.kernels[KERNEL];
  if (kernel === undefined) throw new Error(`the image has no kernel ${JSON.stringify(KERNEL)}`);
  const root = guestRootFor(image, KERNEL);
  const rootFile = 'initrd' in root ? root.initrd : root.rootDisk.path;
  const accel = await chooseAccelerator('auto', kvmBootProbe({ kernel, timeoutMs: 5_000 }));
  console.log(
    `guest image ${image.dir}: kernel ${KERNEL} ${(statSync(kernel).size / MiB).toFixed(1)} MiB, ` +
      `${'initrd' in root ? 'initrd' : 'root drive'} ${path.basename(rootFile)} ` +
      `${(statSync(rootFile).size / MiB).toFixed(1)} MiB; accelerator ${accel.accelerator}`,
  );
  const scratch = mkdtempSync(path.join(tmpdir(), 'guest-min-memory-'));
  let lo = LOW; // assumed to fail (checked)
  let hi = HIGH; // must boot (checked)
  try {
    for (const [m, want] of [
      [hi, true],
      [lo, false],
    ] as const) {
      const r = await boots(m, scratch, kernel, root, accel.accelerator);
      console.log(`${m} MiB: ${r.ok ? 'boots' : 'fails'} (${r.detail})`);
      if (r.ok !== want) throw new Error(`${m} MiB was expected to ${want ? 'boot' : 'fail'}`);
    }
    while (hi - lo > STEP) {
      const mid = Math.round((lo + hi) / 2 / STEP) * STEP;
      const r = await boots(mid, scratch, kernel, root, accel.accelerator);
      console.log(`${mid} MiB: ${r.ok ? 'boots' : 'fails'} (${r.detail})`);
      if (r.ok) hi = mid;
      else lo = mid;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log(
    `smallest memory that boots the guest image (kernel ${KERNEL}): ${hi} MiB (${lo} MiB fails)`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

// The guest-wide RPCs of Kata 1.x: OnlineCPUMem (hot-added CPUs and memory brought online through
// sysfs), MemHotplugByProbe (hot-added memory announced through the memory probe file),
// SetGuestDateTime (the clock, with busybox date) and ReseedRandomDev (bytes mixed into the
// kernel's pool through /dev/random).
import { access, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCommandOk, type CommandRunner } from '../../common/run-command.js';
import type { OnlineCPUMemRequest } from '../../generated/agent.js';
import { failedPrecondition, invalidArgument } from './status-error.js';

const ONLINE_RETRIES = 50;
const ONLINE_RETRY_MS = 50;

export interface GuestSystemOptions {
  run?: CommandRunner;
  cpuDir?: string;
  memoryDir?: string;
  randomDev?: string;
}

export class GuestSystem {
  private readonly run: CommandRunner;
  private readonly cpuDir: string;
  private readonly memoryDir: string;
  private readonly randomDev: string;

  constructor(opts: GuestSystemOptions = {}) {
    this.run = opts.run ?? runCommandOk;
    this.cpuDir = opts.cpuDir ?? '/sys/devices/system/cpu';
    this.memoryDir = opts.memoryDir ?? '/sys/devices/system/memory';
    this.randomDev = opts.randomDev ?? '/dev/random';
  }

  /**
   * Brings `nb_cpus` offline CPUs online (retrying while hotplug settles, as 1.x does), then every
   * offline memory block unless `cpu_only`. Without `wait`, answers at once and works on.
   */
  async onlineCpuMem(req: OnlineCPUMemRequest): Promise<void> {
    if (req.nbCpus === 0 && req.cpuOnly) {
      throw invalidArgument(`nb_cpus ${req.nbCpus} must be greater than 0`);
    }
    const work = async (): Promise<void> => {
      if (req.nbCpus > 0) {
        let onlined = 0;
        for (let i = 0; i < ONLINE_RETRIES && onlined < req.nbCpus; i++) {
          onlined += await this.online(this.cpuDir, /^cpu[0-9]+$/, req.nbCpus - onlined);
          if (onlined < req.nbCpus) await new Promise((r) => setTimeout(r, ONLINE_RETRY_MS));
        }
        if (onlined < req.nbCpus) {
          throw failedPrecondition(`only ${onlined} of ${req.nbCpus} CPUs could be brought online`);
        }
      }
      if (!req.cpuOnly) await this.online(this.memoryDir, /^memory[0-9]+$/, Infinity);
    };
    if (req.wait) return work();
    work().catch(() => {}); // 1.x too only logs what an unwaited request met
  }

  /** Writes 1 to the `online` file of up to `max` entries whose file says 0; returns how many. */
  private async online(dir: string, name: RegExp, max: number): Promise<number> {
    let n = 0;
    const entries = (await readdir(dir).catch(() => [] as string[])).filter((e) => name.test(e));
    for (const e of entries.sort()) {
      if (n >= max) break;
      const file = path.join(dir, e, 'online');
      const state = await readFile(file, 'utf8').catch(() => undefined);
      if (state?.trim() !== '0') continue;
      await writeFile(file, '1');
      n++;
    }
    return n;
  }

  /**
   * Announces hot-added memory at each physical address to the kernel, as 1.x does: one write of
   * `0x<hex>` per address to the memory probe file, in order, stopping at the first that fails.
   * Kernels built without CONFIG_ARCH_MEMORY_PROBE (Debian's) have no such file.
   */
  async probeMemory(addrs: readonly number[]): Promise<void> {
    const probe = path.join(this.memoryDir, 'probe');
    if (addrs.length === 0) return;
    await access(probe).catch(() => {
      throw failedPrecondition(`this guest kernel has no memory probe file (${probe})`);
    });
    for (const addr of addrs) {
      // sysfs takes each write whole, wherever the offset is.
      await writeFile(probe, `0x${addr.toString(16)}`, { flag: 'a' });
    }
  }

  /** Sets the clock to `sec` seconds (and `usec`) since the epoch. */
  async setDateTime(sec: number, usec: number): Promise<void> {
    if (!Number.isSafeInteger(sec) || sec < 0) throw invalidArgument(`Sec ${sec} is not a time`);
    if (!Number.isSafeInteger(usec) || usec < 0 || usec >= 1e6) {
      throw invalidArgument(`Usec ${usec} is not a microsecond count`);
    }
    // busybox date takes whole seconds; a second is rounded up from 500 ms.
    const rounded = sec + (usec >= 500_000 ? 1 : 0);
    await this.run(['date', '-u', '-s', `@${rounded}`], { timeoutMs: 10_000 });
  }

  /** Mixes `data` into the kernel's entropy pool. */
  async reseedRandom(data: Buffer): Promise<void> {
    if (data.length === 0) throw invalidArgument('data is empty');
    await writeFile(this.randomDev, data, { flag: 'w' });
  }
}

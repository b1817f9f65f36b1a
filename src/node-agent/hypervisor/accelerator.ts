// KVM or TCG. A present /dev/kvm is not proof that KVM works: under nested virtualization here
// QEMU starts, SeaBIOS and the kernel's real-mode setup run, and the guest then hangs at the switch
// to protected mode (and `-cpu host` aborts on an MSR). So `auto` boots the guest kernel under KVM
// for a moment and waits for the kernel proper to print its banner; only that counts as working.
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { Accelerator } from './qemu-args.js';
import { DEFAULT_QEMU_BINARY } from './qemu-process.js';

export type AcceleratorRequest = 'auto' | Accelerator;

export interface KvmProbeResult {
  ok: boolean;
  /** Why KVM does or does not work, for logs and the sandbox's status. */
  reason: string;
  millis: number;
}

export type KvmProbe = (signal?: AbortSignal) => Promise<KvmProbeResult>;

export interface AcceleratorChoice {
  accelerator: Accelerator;
  reason: string;
  probe?: KvmProbeResult;
}

// One probe per process and probe function: the answer does not change while the node agent runs.
const probeCache = new WeakMap<KvmProbe, Promise<KvmProbeResult>>();

/** Forgets cached probe results (tests). */
export function resetAcceleratorCache(probe: KvmProbe): void {
  probeCache.delete(probe);
}

export async function chooseAccelerator(
  requested: AcceleratorRequest,
  probe: KvmProbe,
  signal?: AbortSignal,
): Promise<AcceleratorChoice> {
  switch (requested) {
    case 'tcg':
      return { accelerator: 'tcg', reason: 'tcg requested' };
    case 'kvm':
      return { accelerator: 'kvm', reason: 'kvm requested (not probed)' };
    case 'auto': {
      let p = probeCache.get(probe);
      if (!p) {
        p = probe(signal).catch((e: unknown): KvmProbeResult => ({
          ok: false,
          reason: `probe failed: ${(e as Error)?.message ?? String(e)}`,
          millis: 0,
        }));
        probeCache.set(probe, p);
      }
      const result = await p;
      // An aborted probe says nothing about KVM: do not keep it.
      if (signal?.aborted) probeCache.delete(probe);
      return result.ok
        ? { accelerator: 'kvm', reason: `auto: KVM works (${result.reason})`, probe: result }
        : {
            accelerator: 'tcg',
            reason: `auto: KVM unusable, using TCG (${result.reason})`,
            probe: result,
          };
    }
    default:
      throw new Error(`unknown accelerator ${JSON.stringify(requested)}`);
  }
}

export interface KvmBootProbeOptions {
  /** The guest kernel (vmlinux via PVH or vmlinuz); no initrd is needed. */
  kernel: string;
  qemuBinary?: string;
  timeoutMs?: number;
  devKvm?: string;
}

const BANNER = /Linux version \d/;

/** The argv of the probe VM: KVM, the CPU model real VMs get, the kernel's banner on stdout. */
export function kvmProbeArgs(kernel: string): string[] {
  return [
    '-accel',
    'kvm',
    '-cpu',
    'host',
    '-machine',
    'pc',
    '-m',
    '128M',
    '-smp',
    '1',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-serial',
    'stdio',
    '-kernel',
    kernel,
    '-append',
    'console=ttyS0 earlyprintk=serial,ttyS0 panic=-1',
  ];
}

/** A KvmProbe that boots the guest kernel under KVM and waits (≤ timeoutMs) for its banner. */
export function kvmBootProbe(opts: KvmBootProbeOptions): KvmProbe {
  const devKvm = opts.devKvm ?? '/dev/kvm';
  const timeoutMs = opts.timeoutMs ?? 5_000;
  return (signal?: AbortSignal) => {
    const t0 = performance.now();
    const millis = (): number => Math.round(performance.now() - t0);
    try {
      accessSync(devKvm, constants.R_OK | constants.W_OK);
    } catch (e) {
      return Promise.resolve({
        ok: false,
        reason: `${devKvm} not usable: ${(e as NodeJS.ErrnoException).code ?? e}`,
        millis: millis(),
      });
    }
    return new Promise<KvmProbeResult>((resolve) => {
      const child = spawn(opts.qemuBinary ?? DEFAULT_QEMU_BINARY, kvmProbeArgs(opts.kernel), {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      let result: KvmProbeResult | undefined;
      const finish = (ok: boolean, reason: string): void => {
        if (result) return;
        result = { ok, reason, millis: millis() };
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      };
      const lastLine = (s: string): string =>
        s
          .split('\n')
          .map((l) => l.replace(/\r/g, '').trim())
          .filter(Boolean)
          .slice(-1)[0] ?? '(nothing)';
      const timer = setTimeout(
        () =>
          finish(
            false,
            `no kernel banner within ${timeoutMs} ms under KVM; last output: ${lastLine(out)}`,
          ),
        timeoutMs,
      );
      const onAbort = (): void => finish(false, 'probe aborted');
      signal?.addEventListener('abort', onAbort, { once: true });
      child.stdout.on('data', (d: Buffer) => {
        out = (out + d.toString('latin1')).slice(-8192);
        if (BANNER.test(out)) finish(true, `kernel banner after ${millis()} ms`);
      });
      child.stderr.on('data', (d: Buffer) => {
        err = (err + d.toString('utf8')).slice(-4096);
      });
      child.once('error', (e) => {
        finish(false, `cannot start ${opts.qemuBinary ?? DEFAULT_QEMU_BINARY}: ${e.message}`);
        resolve(result as KvmProbeResult);
      });
      // Resolve only once the probe VM is gone, so no probe process outlives the answer.
      child.once('close', (code, sig) => {
        finish(false, `qemu exited (${code ?? sig}) under KVM: ${lastLine(err)}`);
        resolve(result as KvmProbeResult);
      });
    });
  };
}

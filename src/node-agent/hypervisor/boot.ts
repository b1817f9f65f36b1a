// Boot a VM and wait until its guest agent answers Health.Check (or, before an agent exists, until
// a console line shows), with one deadline for the whole boot. A failed boot leaves no process and
// its error carries the console's last lines, which is what explains it (a kernel panic, an init
// that could not start the agent).
import { open } from 'node:fs/promises';
import type { Logger } from '../../observability/logger.js';
import { buildQemuArgs, type VmConfig } from './qemu-args.js';
import { QemuProcess, type LaunchOptions, type LaunchStrategyKind } from './qemu-process.js';
import { pause } from '../../common/sleep.js';
import type { StepCondition } from '../../crds/index.js';
import { AgentConnection, type RpcObserver } from '../../agent/agent-connection.js';

export type WaitFor =
  | {
      kind: 'agent';
      /** Where the serial bridge listens (QEMU's chardev socket is `vm.agentChannelSocket`). */
      grpcSocket: string;
      onCall?: RpcObserver;
      checkTimeoutMs?: number;
    }
  | { kind: 'console'; pattern: RegExp };

/** How boot reaches the agent once QEMU runs; unit tests give a stand-in. */
export type OpenAgent = typeof AgentConnection.open;

export interface BootOptions {
  vm: VmConfig;
  waitFor: WaitFor;
  /** From QEMU start until ready. */
  deadlineMs: number;
  /** QEMU's own stdout/stderr log. */
  stderrLog: string;
  qemuBinary?: string;
  /** See LaunchOptions.launchPrefix (QEMU inside the sandbox's network namespace). */
  launchPrefix?: readonly string[];
  /** See LaunchOptions.fds (the drives as descriptors kata-host-fs opens). */
  fds?: LaunchOptions['fds'];
  strategy?: LaunchStrategyKind;
  unit?: string;
  /** Extra files to remove when the VM is stopped (the agent channel socket, the pidfile). */
  cleanupPaths?: readonly string[];
  signal?: AbortSignal;
  logger?: Logger;
  consoleLines?: number;
  openAgent?: OpenAgent;
}

export interface BootResult {
  process: QemuProcess;
  /** Set when waiting for the agent; the caller owns (and closes) it. */
  agent?: AgentConnection;
  /** QEMU spawn → ready. */
  bootMillis: number;
}

export type BootFailure = 'Timeout' | 'QemuExited' | 'Aborted' | 'AgentUnhealthy';

export class BootError extends Error {
  readonly condition: StepCondition = 'VMReady';
  readonly reason = 'BootFailed';
  constructor(
    readonly failure: BootFailure,
    detail: string,
    readonly consoleTail: string[],
    readonly qemuStderrTail: string[],
    readonly millis: number,
  ) {
    super(
      `VM boot failed (${failure}) after ${millis} ms: ${detail}` +
        `\n--- console (last ${consoleTail.length} lines) ---\n${consoleTail.join('\n')}` +
        (qemuStderrTail.length ? `\n--- qemu stderr ---\n${qemuStderrTail.join('\n')}` : ''),
    );
    this.name = 'BootError';
  }
}

/** Polls a growing file until `pattern` matches its text; false when the signal ends first. */
export async function waitForConsoleLine(
  file: string,
  pattern: RegExp,
  signal: AbortSignal,
  pollMs = 50,
): Promise<string | undefined> {
  let offset = 0;
  let window = '';
  const buf = Buffer.alloc(64 * 1024);
  while (!signal.aborted) {
    let fh;
    try {
      fh = await open(file, 'r');
    } catch {
      fh = undefined; // QEMU has not created it yet
    }
    if (fh) {
      try {
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          // Keep a tail so a line split across reads still matches.
          window = (window + buf.subarray(0, bytesRead).toString('utf8')).slice(-16 * 1024);
          const m = pattern.exec(window);
          if (m) return m[0];
        }
      } finally {
        await fh.close();
      }
    }
    await pause(pollMs, signal);
  }
  return undefined;
}

/**
 * Starts QEMU from `vm` and waits until ready. On failure the VM is stopped (and reaped) before
 * the BootError is thrown.
 */
export async function bootVm(opts: BootOptions): Promise<BootResult> {
  const args = buildQemuArgs(opts.vm);
  const t0 = performance.now();
  const elapsed = (): number => Math.round(performance.now() - t0);
  const proc = await QemuProcess.launch({
    args,
    qmpSocket: opts.vm.qmpSocket,
    consoleLog: opts.vm.console.logFile,
    stderrLog: opts.stderrLog,
    cleanupPaths: [
      ...(opts.vm.agentChannelSocket ? [opts.vm.agentChannelSocket] : []),
      ...(opts.vm.pidFile ? [opts.vm.pidFile] : []),
      ...(opts.cleanupPaths ?? []),
    ],
    ...(opts.qemuBinary !== undefined && { qemuBinary: opts.qemuBinary }),
    ...(opts.launchPrefix !== undefined && { launchPrefix: opts.launchPrefix }),
    ...(opts.fds !== undefined && { fds: opts.fds }),
    ...(opts.strategy !== undefined && { strategy: opts.strategy }),
    ...(opts.unit !== undefined && { unit: opts.unit }),
    ...(opts.logger !== undefined && { logger: opts.logger }),
  });

  // One signal ends every wait: the deadline, the caller's abort, or QEMU exiting.
  const exitCtl = new AbortController();
  proc.exited.then(
    () => exitCtl.abort(new Error('qemu exited')),
    () => {},
  );
  const deadline = AbortSignal.timeout(opts.deadlineMs);
  const signal = AbortSignal.any([deadline, exitCtl.signal, ...(opts.signal ? [opts.signal] : [])]);

  let agent: AgentConnection | undefined;
  let lastErr = '';
  try {
    if (opts.waitFor.kind === 'console') {
      const line = await waitForConsoleLine(opts.vm.console.logFile, opts.waitFor.pattern, signal);
      if (line !== undefined) return { process: proc, bootMillis: elapsed() };
      lastErr = `no console line matching ${opts.waitFor.pattern}`;
    } else {
      const checkTimeoutMs = opts.waitFor.checkTimeoutMs ?? 2_000;
      if (!opts.vm.agentChannelSocket) throw new Error('the VM has no agent channel');
      // Not the boot's signal: that one ends at the boot deadline, and the bridge lives with the VM.
      agent = await (opts.openAgent ?? AgentConnection.open)(
        { agentChannelSocket: opts.vm.agentChannelSocket, grpcSocket: opts.waitFor.grpcSocket },
        opts.waitFor.onCall,
      );
      while (!signal.aborted) {
        try {
          // waitForReady: the call waits while the guest is still booting instead of failing fast.
          const serving = await agent.client.check({
            waitForReady: true,
            timeoutMs: checkTimeoutMs,
            signal,
          });
          if (serving) return { process: proc, agent, bootMillis: elapsed() };
          lastErr = 'agent answered Check: NOT_SERVING';
        } catch (e) {
          lastErr = `Check: ${(e as Error).message}`;
        }
        await pause(50, signal);
      }
    }
  } catch (e) {
    lastErr = (e as Error).message;
  }

  // Failure: find out why, then make sure nothing is left running.
  const exited = exitCtl.signal.aborted;
  const failure: BootFailure = exited
    ? 'QemuExited'
    : opts.signal?.aborted
      ? 'Aborted'
      : deadline.aborted
        ? 'Timeout'
        : 'AgentUnhealthy';
  const millis = elapsed();
  await agent?.close().catch(() => {});
  await proc.stop({ powerdownGraceMs: 0, quitGraceMs: 1_000, qmpTimeoutMs: 1_000 });
  const status = await proc.exited;
  const detail = exited
    ? `QEMU exited (code ${status.code ?? '-'}, signal ${status.signal ?? '-'}) before the guest was ready; ${lastErr}`
    : failure === 'Timeout'
      ? `not ready within ${opts.deadlineMs} ms; ${lastErr}`
      : lastErr;
  throw new BootError(
    failure,
    detail,
    await proc.consoleTail(opts.consoleLines ?? 20),
    await proc.stderrTail(10),
    millis,
  );
}

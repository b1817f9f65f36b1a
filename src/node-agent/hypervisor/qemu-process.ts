// Starting, adopting, stopping and reaping a QEMU process. QEMU must outlive the node agent: it is
// started detached in its own session (or in a transient systemd scope), and a restarted agent
// re-adopts it by pid + kernel start time, which cannot be fooled by pid reuse.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import type { Logger } from '../../observability/logger.js';
import { execWithFdsArgv } from '../host-fs/argv.js';
import type { FdOpen, HostFs } from '../host-fs/types.js';
import { QmpClient } from './qmp-client.js';
import { sleep } from '../../common/sleep.js';

export type LaunchStrategyKind = 'detached' | 'systemd-scope';

export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';
const SYSTEMD_RUN = 'systemd-run';

/** What a restarted node agent needs to find (and stop) a VM it did not spawn. Serializable. */
export interface QemuProcessInfo {
  pid: number;
  /** /proc/<pid>/stat field 22: clock ticks since boot when the process started. */
  startTime: number;
  strategy: LaunchStrategyKind;
  qmpSocket: string;
  consoleLog: string;
  /** QEMU's own stdout/stderr. */
  stderrLog: string;
  /** Files QEMU made that go once it is gone (sockets, pidfile). */
  cleanupPaths: string[];
  /** The systemd unit, for the systemd-scope strategy. */
  unit?: string;
}

export interface LaunchOptions {
  qemuBinary?: string;
  /**
   * Runs QEMU through this command, e.g. `['nsenter', '--net=/run/netns/x', '--']` to start it
   * inside the sandbox's network namespace. It must exec QEMU (so the pid is QEMU's).
   */
  launchPrefix?: readonly string[];
  /** From buildQemuArgs. */
  args: readonly string[];
  /**
   * Host files QEMU gets as inherited descriptors (its drives' fd sets): kata-host-fs opens each
   * beneath its root right before it execs QEMU, so QEMU never resolves a tenant's path. A failed
   * open ends the launch with exit 125 and the helper's JSON error in stderrLog. `cgroups`: the
   * VM's own cgroup directories, which the helper joins first (see cgroups/vm-cgroups.ts).
   */
  fds?: { hostFs: HostFs; opens: readonly FdOpen[]; cgroups?: readonly string[] };
  qmpSocket: string;
  consoleLog: string;
  stderrLog: string;
  cleanupPaths?: readonly string[];
  strategy?: LaunchStrategyKind;
  /** The systemd scope's name (systemd-scope strategy), e.g. kata-<sandbox uid>. */
  unit?: string;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

export interface StopOptions {
  /** How long the guest gets to power off after the ACPI power button; 0 skips the button. */
  powerdownGraceMs?: number;
  /** How long QEMU gets to exit after QMP quit before SIGKILL. */
  quitGraceMs?: number;
  /** Per QMP call (connect, command). */
  qmpTimeoutMs?: number;
  signal?: AbortSignal;
}

export type StopOutcome = 'already-exited' | 'powerdown' | 'quit' | 'killed';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const UNIT = /^[A-Za-z0-9_.:-]{1,200}$/;

/** `systemd-run --scope … -- qemu …`: systemd-run registers the scope and execs QEMU in place, so the pid is QEMU's. */
export function systemdScopeArgv(
  unit: string,
  qemuBinary: string,
  qemuArgs: readonly string[],
): string[] {
  if (!UNIT.test(unit)) throw new Error(`${JSON.stringify(unit)} is not a systemd unit name`);
  return [
    '--scope',
    `--unit=${unit}.scope`,
    '--collect',
    '--quiet',
    '--property=KillMode=none',
    '--',
    qemuBinary,
    ...qemuArgs,
  ];
}

/**
 * The command that starts QEMU: [systemd-run --scope … --] [launchPrefix…] [kata-host-fs exec
 * --no-setid --open … --] qemu args. Every wrapper execs the next in place, so the spawned pid ends up
 * QEMU's (what adoption and the pidfile rely on); the helper comes last, so the descriptors it
 * opens are QEMU's and nothing between could lose them. Pure.
 */
export function launchCommand(
  opts: Pick<LaunchOptions, 'qemuBinary' | 'launchPrefix' | 'args' | 'fds' | 'strategy' | 'unit'>,
): { command: string; args: string[] } {
  const qemu = [opts.qemuBinary ?? DEFAULT_QEMU_BINARY, ...opts.args];
  // Always through the helper when the node agent has it: besides the drives' descriptors it puts
  // QEMU under the no-setid seccomp filter (the guest cannot make set-ID files, device nodes or
  // file capabilities on the host through the 9p share).
  const withFds = opts.fds
    ? execWithFdsArgv(opts.fds.hostFs, opts.fds.opens, qemu, {
        noSetid: true,
        ...(opts.fds.cgroups && { cgroups: opts.fds.cgroups }),
      })
    : qemu;
  const [head, ...rest] = [...(opts.launchPrefix ?? []), ...withFds];
  if ((opts.strategy ?? 'detached') === 'systemd-scope') {
    if (!opts.unit) throw new Error('the systemd-scope strategy needs a unit name');
    return { command: SYSTEMD_RUN, args: systemdScopeArgv(opts.unit, head as string, rest) };
  }
  return { command: head as string, args: rest };
}

/**
 * The scope strategy needs systemd as the host's init (/run/systemd/system exists) and must be
 * turned on explicitly (the node agent reaches the host's systemd only with hostPID and the
 * host's /run); anything else runs QEMU detached in its own session.
 */
export function chooseLaunchStrategy(opts: {
  systemdScopeEnabled: boolean;
  systemdRunDir?: string;
  exists?: (p: string) => boolean;
}): LaunchStrategyKind {
  const exists = opts.exists ?? existsSync;
  return opts.systemdScopeEnabled && exists(opts.systemdRunDir ?? '/run/systemd/system')
    ? 'systemd-scope'
    : 'detached';
}

/** Parses /proc/<pid>/stat text: the state (field 3) and start time (field 22). */
export function parseProcStat(text: string): { state: string; startTime: number } | undefined {
  // comm (field 2) is in parentheses and may itself contain ')' or spaces: split after the last ')'.
  const end = text.lastIndexOf(')');
  if (end < 0) return undefined;
  const rest = text.slice(end + 2).split(' ');
  const state = rest[0];
  const start = rest[19]; // fields 3.. → index 0 is field 3, so field 22 is index 19
  if (state === undefined || start === undefined || !/^\d+$/.test(start)) return undefined;
  return { state, startTime: Number(start) };
}

export function readProcStat(pid: number): { state: string; startTime: number } | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** True while pid is alive and is the process that started at startTime (not a reused pid, not a zombie). */
export function isSameProcess(pid: number, startTime: number): boolean {
  const st = readProcStat(pid);
  return st !== undefined && st.startTime === startTime && st.state !== 'Z' && st.state !== 'X';
}

/** The last `lines` non-empty lines of a console log (reads at most maxBytes from its end). */
export async function consoleTail(
  file: string,
  lines = 20,
  maxBytes = 64 * 1024,
): Promise<string[]> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch {
    return [];
  }
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    let text = buf.toString('utf8');
    if (len < size) text = text.slice(text.indexOf('\n') + 1); // drop the partial first line
    return text
      .split('\n')
      .map((l) => l.replace(/\r/g, '').trimEnd())
      .filter((l) => l !== '')
      .slice(-lines);
  } finally {
    await fh.close();
  }
}

/** A running (or finished) QEMU, spawned by us or adopted after a restart. */
export class QemuProcess {
  /** Settles when the process is gone (reaped, if it was our child). Never rejects. */
  readonly exited: Promise<ExitStatus>;
  private exitStatus: ExitStatus | undefined;

  private constructor(
    readonly info: QemuProcessInfo,
    private readonly child: ChildProcess | undefined,
    private readonly logger?: Logger,
  ) {
    if (child) {
      this.exited = new Promise((resolve) => {
        const done = (code: number | null, signal: NodeJS.Signals | null): void => {
          this.exitStatus = { code, signal };
          resolve(this.exitStatus);
        };
        if (child.exitCode !== null || child.signalCode !== null) {
          done(child.exitCode, child.signalCode);
        } else child.once('exit', done);
      });
    } else {
      // Not our child: we cannot wait for it, so poll /proc until it is gone (or a zombie that
      // its real parent must reap).
      this.exited = (async () => {
        while (isSameProcess(info.pid, info.startTime)) await sleep(100);
        this.exitStatus = { code: null, signal: null };
        return this.exitStatus;
      })();
    }
  }

  get pid(): number {
    return this.info.pid;
  }

  get running(): boolean {
    return this.exitStatus === undefined && isSameProcess(this.info.pid, this.info.startTime);
  }

  /** Starts QEMU; resolves once it is spawned (not once the guest runs). */
  static async launch(opts: LaunchOptions): Promise<QemuProcess> {
    const strategy = opts.strategy ?? 'detached';
    const { command, args } = launchCommand(opts);
    const out = openSync(opts.stderrLog, 'a', 0o640);
    let child: ChildProcess;
    try {
      // detached: its own session and process group, so the node agent's signals (and its
      // container's end) do not reach it; stdio goes to files, never to pipes we would have to drain.
      child = spawn(command, args, {
        detached: true,
        stdio: ['ignore', out, out],
        env: opts.env ?? process.env,
      });
    } finally {
      closeSync(out);
    }
    const spawned = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => {
        child.off('error', reject);
        resolve(child.pid as number);
      });
    });
    // Keep a listener so a late error (e.g. kill on a dead pid) never becomes an uncaught one.
    child.on('error', (e) => opts.logger?.warn({ err: e, pid: spawned }, 'qemu process error'));
    child.unref();
    const stat = readProcStat(spawned);
    const info: QemuProcessInfo = {
      pid: spawned,
      // An exit this early leaves no stat; 0 never matches a live process.
      startTime: stat?.startTime ?? 0,
      strategy,
      qmpSocket: opts.qmpSocket,
      consoleLog: opts.consoleLog,
      stderrLog: opts.stderrLog,
      cleanupPaths: [...(opts.cleanupPaths ?? [])],
      ...(opts.unit !== undefined && { unit: opts.unit }),
    };
    opts.logger?.info({ pid: spawned, strategy }, 'qemu started');
    return new QemuProcess(info, child, opts.logger);
  }

  /** Re-adopts a QEMU a previous node agent started; undefined if that process is gone. */
  static adopt(info: QemuProcessInfo, logger?: Logger): QemuProcess | undefined {
    if (!isSameProcess(info.pid, info.startTime)) return undefined;
    return new QemuProcess(info, undefined, logger);
  }

  async consoleTail(lines = 20): Promise<string[]> {
    return consoleTail(this.info.consoleLog, lines);
  }

  /** QEMU's own messages (argument errors, aborts). */
  async stderrTail(lines = 20): Promise<string[]> {
    return consoleTail(this.info.stderrLog, lines);
  }

  private async waitExit(ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.exitStatus) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
      signal?.addEventListener('abort', () => resolve(false), { once: true });
    });
    const r = await Promise.race([this.exited.then(() => true as const), timeout]);
    clearTimeout(timer);
    return r;
  }

  private kill(sig: NodeJS.Signals): void {
    // Re-check identity right before signalling: never signal a reused pid.
    if (!isSameProcess(this.info.pid, this.info.startTime)) return;
    try {
      if (this.child) this.child.kill(sig);
      else process.kill(this.info.pid, sig);
    } catch {
      // gone in between
    }
  }

  /**
   * Powerdown (ACPI button) → grace → QMP quit → grace → SIGKILL, then always waits until the
   * process is gone and removes its sockets. An aborted signal skips straight to SIGKILL.
   */
  async stop(opts: StopOptions = {}): Promise<StopOutcome> {
    const powerdownGraceMs = opts.powerdownGraceMs ?? 5_000;
    const quitGraceMs = opts.quitGraceMs ?? 5_000;
    const qmpTimeoutMs = opts.qmpTimeoutMs ?? 2_000;
    let outcome: StopOutcome = 'killed';
    if (!this.running) {
      outcome = 'already-exited';
    } else if (!opts.signal?.aborted) {
      let qmp: QmpClient | undefined;
      try {
        qmp = await QmpClient.connect(this.info.qmpSocket, {
          timeoutMs: qmpTimeoutMs,
          ...(opts.signal && { signal: opts.signal }),
        });
      } catch (e) {
        this.logger?.warn({ err: e, pid: this.pid }, 'QMP unreachable; killing QEMU');
      }
      try {
        if (qmp && powerdownGraceMs > 0) {
          try {
            await qmp.systemPowerdown({ timeoutMs: qmpTimeoutMs });
            if (await this.waitExit(powerdownGraceMs, opts.signal)) outcome = 'powerdown';
          } catch (e) {
            this.logger?.warn({ err: e, pid: this.pid }, 'system_powerdown failed');
          }
        }
        if (qmp && outcome === 'killed' && !this.exitStatus && !opts.signal?.aborted) {
          try {
            await qmp.quit({ timeoutMs: qmpTimeoutMs });
            if (await this.waitExit(quitGraceMs, opts.signal)) outcome = 'quit';
          } catch (e) {
            this.logger?.warn({ err: e, pid: this.pid }, 'QMP quit failed');
          }
        }
      } finally {
        qmp?.close();
      }
    }
    if (outcome === 'killed' && this.exitStatus) outcome = 'quit';
    if (outcome === 'killed') {
      this.kill('SIGKILL');
    }
    // Always reap: a SIGKILLed process is gone within moments; never return while it exists.
    await this.exited;
    await Promise.all(
      [this.info.qmpSocket, ...this.info.cleanupPaths].map((p) => rm(p, { force: true })),
    );
    this.logger?.info({ pid: this.pid, outcome }, 'qemu stopped');
    return outcome;
  }
}

/** The part of a QEMU process the runtime uses (QemuProcess; a fake in unit tests). */
export type RunningVm = Pick<
  QemuProcess,
  'pid' | 'running' | 'exited' | 'info' | 'stop' | 'consoleTail'
>;

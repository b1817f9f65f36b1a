// Containers and their processes. Each container's init (`crun run`) and each exec (`crun exec`)
// is the agent's own child in the foreground: Node.js can reap only its own children and cannot
// take a console fd, so exit codes and stdio come from those children. A process with a terminal
// runs under the terminal relay (guest/tty-relay), which takes the terminal crun makes
// (--console-socket) and relays it: the relay is then the child, and its status is crun's.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { inBackground } from '../../common/background.js';
import { runCommandOk, type CommandRunner } from '../../common/run-command.js';
import type {
  CreateContainerRequest,
  Device,
  ExecProcessRequest,
  Storage,
} from '../../generated/agent.js';
import type { LinuxResources, Process } from '../../generated/oci.js';
import type { Logger } from '../../observability/logger.js';
import type { BlockDevices } from './block-devices.js';
import { validateDevice, withDevices, type ResolvedDevice } from './device-nodes.js';
import { ociProcess, ociResources, toOciConfig } from './oci-config.js';
import { AGENT_DIR, guardPath, validateContainerId, validateId } from './path-guard.js';
import { GuestProcess, ProcessTable, type TerminalOptions } from './process-table.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from './status-error.js';
import { validateStorage, type StorageMounter } from './storage-mounter.js';

const CRUN_TIMEOUT_MS = 30_000;
/** Where the terminal relay is in the guest image (guest/build.sh). */
export const TTY_RELAY_BIN = '/usr/bin/kata-tty-relay';
/** Where the relays' console sockets go: a short path (a socket path holds 107 bytes). */
export const CONSOLE_DIR = '/run/kata-tty';
// After SIGKILL, how long to wait for crun to report the exit before going on with the removal.
const KILL_WAIT_MS = 10_000;

type ContainerState = 'created' | 'running' | 'stopped';

interface Container {
  id: string;
  bundle: string;
  init: GuestProcess;
  removing: boolean;
}

export interface ContainerManagerOptions {
  mounter: StorageMounter;
  blockDevices: BlockDevices;
  logger: Logger;
  /** Where bundles go (<bundleRoot>/<container id>/config.json); default /run/kata-containers. */
  bundleRoot?: string;
  crunBin?: string;
  /** Global crun flags (e.g. --root <dir>) put before the subcommand. */
  crunGlobalArgs?: string[];
  /**
   * `crun run --no-pivot`: pivot_root(2) fails (EINVAL) when the guest's root is the initramfs,
   * so crun must move the rootfs and chroot instead (as Kata's agent does on an initrd image).
   * Default: on when / is the initial rootfs.
   */
  noPivot?: boolean;
  run?: CommandRunner;
  /** The terminal relay (default TTY_RELAY_BIN). */
  ttyRelayBin?: string;
  /** Where console sockets go (default CONSOLE_DIR). */
  consoleDir?: string;
}

/** Whether / is the kernel's initial rootfs (an initramfs), where pivot_root is refused. */
export function rootIsInitramfs(mounts = '/proc/self/mounts'): boolean {
  try {
    const roots = readFileSync(mounts, 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .filter((f) => f[1] === '/');
    const fstype = roots[roots.length - 1]?.[2];
    return fstype === 'rootfs' || fstype === 'ramfs';
  } catch {
    return false;
  }
}

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(osConstants.signals).map(([name, n]) => [n, name.replace(/^SIG/, '')]),
);

/** The signal name crun takes ("KILL"), refusing numbers that are not signals. */
export function signalName(signal: number): string {
  const name = SIGNAL_NAMES.get(signal);
  if (!name) throw invalidArgument(`signal ${signal} is not a signal`);
  return name;
}

function checkProcess(p: Process | undefined, field: string): Process {
  if (!p) throw invalidArgument(`${field} is missing`);
  if (p.Args.length === 0) throw invalidArgument(`${field}.args is empty`);
  return p;
}

const isBind = (m: { type: string; options: string[] }): boolean =>
  m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');

export class ContainerManager {
  readonly processes = new ProcessTable();
  private readonly containers = new Map<string, Container>();
  private readonly run: CommandRunner;
  private readonly bundleRoot: string;
  private readonly noPivot: boolean;

  constructor(private readonly opts: ContainerManagerOptions) {
    this.run = opts.run ?? runCommandOk;
    this.bundleRoot = opts.bundleRoot ?? AGENT_DIR;
    this.noPivot = opts.noPivot ?? rootIsInitramfs();
  }

  ids(): string[] {
    return [...this.containers.keys()];
  }

  state(id: string): ContainerState {
    const c = this.get(id);
    return !c.init.started ? 'created' : c.init.exited ? 'stopped' : 'running';
  }

  async create(req: CreateContainerRequest): Promise<void> {
    const id = validateContainerId('container_id', req.containerId);
    if (req.execId && req.execId !== id) validateId('exec_id', req.execId);
    // Kata 1.x runs such a container in the agent's own pid namespace (debug containers); here
    // every container gets its own, and saying so beats ignoring the flag.
    if (req.agentPidns) {
      throw invalidArgument("agent_pidns: sharing the agent's pid namespace is not supported");
    }
    const spec = req.OCI;
    if (!spec) throw invalidArgument('OCI is missing');
    const initProcess = checkProcess(spec.Process, 'OCI.process');
    const rootPath = guardPath('OCI.root.path', spec.Root?.Path ?? '');
    spec.Mounts.forEach((m, i) => {
      if (isBind(m)) guardPath(`OCI.mounts[${i}].source`, m.source);
    });
    req.storages.forEach((s, i) => validateStorage(s, `storages[${i}]`));
    req.devices.forEach((d, i) => validateDevice(d, `devices[${i}]`));
    if (this.containers.has(id))
      throw alreadyExists(`container_id ${JSON.stringify(id)} already exists`);

    const bundle = path.join(this.bundleRoot, id);
    const init = new GuestProcess(id, id, initProcess.Terminal);
    const c: Container = { id, bundle, init, removing: false };
    // Claimed before the first await, so a concurrent duplicate is refused too.
    this.containers.set(id, c);
    try {
      await this.mountStorages(req.storages, id);
      const devices = await this.resolveDevices(req.devices);
      const config = withDevices(toOciConfig(spec, rootPath), devices);
      await mkdir(bundle, { recursive: true, mode: 0o700 });
      await writeFile(path.join(bundle, 'config.json'), JSON.stringify(config), { mode: 0o600 });
    } catch (err) {
      this.containers.delete(id);
      await this.opts.mounter.unmountOwner(id);
      await removeBundle(bundle).catch(() => {});
      throw err;
    }
    this.processes.add(c.init);
    this.opts.logger.info({ containerId: id, bundle }, 'container created');
  }

  async start(id: string): Promise<void> {
    const c = this.get(id);
    if (c.init.started) throw failedPrecondition(`container ${JSON.stringify(id)} already started`);
    const terminal = c.init.terminal ? await this.terminalFor(c.init) : undefined;
    await c.init.start(
      this.crun,
      [
        ...this.globalArgs,
        'run',
        ...(this.noPivot ? ['--no-pivot'] : []),
        ...consoleArgs(terminal),
        '--bundle',
        c.bundle,
        '--pid-file',
        path.join(c.bundle, 'init.pid'),
        id,
      ],
      { terminal },
    );
    // crun writes the pid file once the container exists (its state follows at once): until then
    // an ExecProcess would meet "container does not exist". Bounded, in case crun fails early.
    await readPidFile(path.join(c.bundle, 'init.pid'), () => c.init.exited, 500);
    this.opts.logger.info({ containerId: id, pid: c.init.pid }, 'container started');
    // For the log only; an init that failed to run was reported to the caller of its wait.
    c.init.wait().then(
      (status) => this.opts.logger.info({ containerId: id, status }, 'container exited'),
      () => {},
    );
  }

  async exec(req: ExecProcessRequest): Promise<void> {
    const c = this.get(req.containerId);
    const execId = validateId('exec_id', req.execId);
    const p = checkProcess(req.process, 'process');
    if (this.state(c.id) !== 'running') {
      throw failedPrecondition(`container ${JSON.stringify(c.id)} is not running`);
    }
    if (this.processes.has(c.id, execId)) {
      throw alreadyExists(
        `exec_id ${JSON.stringify(execId)} already exists in container ${JSON.stringify(c.id)}`,
      );
    }
    const processFile = path.join(c.bundle, `exec-${execId}.json`);
    const pidFile = path.join(c.bundle, `exec-${execId}.pid`);
    await writeFile(processFile, JSON.stringify(ociProcess(p)), { mode: 0o600 });
    const proc = new GuestProcess(c.id, execId, p.Terminal);
    this.processes.add(proc);
    try {
      const terminal = p.Terminal ? await this.terminalFor(proc) : undefined;
      await proc.start(
        this.crun,
        [
          ...this.globalArgs,
          'exec',
          ...consoleArgs(terminal),
          '--process',
          processFile,
          '--pid-file',
          pidFile,
          c.id,
        ],
        { terminal },
      );
    } catch (err) {
      this.opts.logger.warn({ containerId: c.id, execId, err }, 'exec failed to start');
      throw err;
    }
    // crun exec forks the process into the container; its pid (for SIGKILL, which crun cannot
    // forward) is in the pid file once crun wrote it.
    inBackground(
      `reading the pid file of exec ${execId}`,
      readPidFile(pidFile, () => proc.exited).then((pid) => {
        if (pid !== undefined) proc.realPid = pid;
      }),
      this.opts.logger,
    );
  }

  /** One process (by exec id), or every process of the container when the exec id is empty. */
  async signal(containerId: string, execId: string, signal: number): Promise<void> {
    const c = this.get(containerId);
    const sig = signalName(signal);
    if (execId === '') {
      if (this.state(c.id) !== 'running') return;
      await this.crunKill(c, ['--all', c.id, sig]);
      return;
    }
    const p = this.processes.get(c.id, execId);
    if (!p.started) throw failedPrecondition(`container ${JSON.stringify(c.id)} has not started`);
    if (p.exited) return;
    if (p === c.init) {
      await this.crunKill(c, [c.id, sig]);
      return;
    }
    if (p.realPid !== undefined) {
      try {
        process.kill(p.realPid, signal);
        return;
      } catch {
        // Gone already, or not yet known: fall back to crun, which forwards catchable signals.
      }
    }
    p.kill(signal);
  }

  /** The pid crun wrote for the container's init while it runs; NOT_FOUND for an unknown id. */
  async initPid(containerId: string): Promise<number | undefined> {
    const c = this.get(containerId);
    if (this.state(c.id) !== 'running') return undefined;
    const pid = Number(
      (await readFile(path.join(c.bundle, 'init.pid'), 'utf8').catch(() => '')).trim(),
    );
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }

  /** The process, or the container's init when the exec id is empty. */
  process(containerId: string, execId: string): GuestProcess {
    const c = this.get(containerId);
    return this.processes.get(c.id, execId === '' ? c.id : execId);
  }

  /**
   * Kills what is left (SIGKILL once `timeoutSeconds` passed; 0 waits for ever, as the protocol
   * says), deletes the crun container, unmounts its storages and removes its bundle.
   */
  async remove(containerId: string, timeoutSeconds: number, killNow = false): Promise<void> {
    const c = this.get(containerId);
    if (c.removing) throw failedPrecondition(`container ${JSON.stringify(c.id)} is being removed`);
    c.removing = true;
    try {
      const procs = this.processes.ofContainer(c.id);
      const running = (): GuestProcess[] => procs.filter((p) => p.started && !p.exited);
      if (running().length > 0 && !killNow) {
        await waitAll(running(), timeoutSeconds === 0 ? undefined : timeoutSeconds * 1000);
      }
      if (running().length > 0) {
        if (c.init.started && !c.init.exited) {
          await this.crunKill(c, ['--all', c.id, 'KILL']).catch(() => {});
        }
        for (const p of running()) {
          if (p.realPid !== undefined) {
            try {
              process.kill(p.realPid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
          p.kill('SIGKILL');
        }
        await waitAll(running(), KILL_WAIT_MS);
      }
      for (const p of procs) p.abandon('container removed before it started');
      if (c.init.started) {
        await this.run([this.crun, ...this.globalArgs, 'delete', '-f', c.id], {
          timeoutMs: CRUN_TIMEOUT_MS,
        }).catch((err: unknown) =>
          this.opts.logger.warn({ containerId: c.id, err }, 'crun delete failed'),
        );
      }
      const errors = await this.opts.mounter.unmountOwner(c.id);
      if (errors.length > 0) {
        throw failedPrecondition(
          `container ${JSON.stringify(c.id)}: unmount failed: ${errors.map((e) => e.message).join('; ')}`,
        );
      }
      await removeBundle(c.bundle);
      this.processes.removeContainer(c.id);
      this.containers.delete(c.id);
      this.opts.logger.info({ containerId: c.id }, 'container removed');
    } finally {
      c.removing = false;
    }
  }

  /** Freezes every process of a running container (Kata 1.x: PauseContainer). */
  async pause(id: string): Promise<void> {
    await this.crunRunning(id, 'pause');
  }

  async resume(id: string): Promise<void> {
    await this.crunRunning(id, 'resume');
  }

  /** New cgroup limits for a running container (Kata 1.x: UpdateContainer). */
  async update(id: string, resources: LinuxResources | undefined): Promise<void> {
    if (!resources) throw invalidArgument('resources is missing');
    const c = this.get(id);
    this.mustRun(c);
    const file = path.join(c.bundle, 'update.json');
    await writeFile(file, JSON.stringify(ociResources(resources) ?? {}), { mode: 0o600 });
    try {
      await this.run([this.crun, ...this.globalArgs, 'update', '--resources', file, c.id], {
        timeoutMs: CRUN_TIMEOUT_MS,
      });
    } finally {
      await unlink(file).catch(() => {});
    }
  }

  /** The pids (in the agent's namespace) of every process of a running container. */
  async pids(id: string): Promise<number[]> {
    const c = this.get(id);
    this.mustRun(c);
    const res = await this.run([this.crun, ...this.globalArgs, 'ps', '--format=json', c.id], {
      timeoutMs: CRUN_TIMEOUT_MS,
    });
    const text = res.stdout.toString();
    const pids: unknown = JSON.parse(text);
    if (!Array.isArray(pids) || !pids.every((p) => Number.isInteger(p))) {
      throw new Error(`crun ps ${c.id}: not a list of pids: ${text.slice(0, 200)}`);
    }
    return pids as number[];
  }

  private mustRun(c: Container): void {
    if (this.state(c.id) !== 'running') {
      throw failedPrecondition(`container ${JSON.stringify(c.id)} is not running`);
    }
  }

  private async crunRunning(id: string, verb: 'pause' | 'resume'): Promise<void> {
    const c = this.get(id);
    this.mustRun(c);
    await this.run([this.crun, ...this.globalArgs, verb, c.id], { timeoutMs: CRUN_TIMEOUT_MS });
  }

  /** Removes every container, killing at once (DestroySandbox). */
  async removeAll(): Promise<Error[]> {
    const errors: Error[] = [];
    for (const id of [...this.containers.keys()].reverse()) {
      try {
        await this.remove(id, 0, true);
      } catch (err) {
        errors.push(err as Error);
      }
    }
    return errors;
  }

  private get(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw notFound(`container_id ${JSON.stringify(id)} not found`);
    return c;
  }

  /** The relay of a process with a terminal: a fresh console socket, removed after the process. */
  private async terminalFor(p: GuestProcess): Promise<TerminalOptions> {
    const dir = this.opts.consoleDir ?? CONSOLE_DIR;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const consoleSocket = path.join(dir, `${randomBytes(8).toString('hex')}.sock`);
    // The relay unlinks it once crun connected; this covers a relay that died first.
    p.wait().then(
      () => rm(consoleSocket, { force: true }),
      () => rm(consoleSocket, { force: true }),
    );
    return {
      relayBin: this.opts.ttyRelayBin ?? TTY_RELAY_BIN,
      consoleSocket,
      readyTimeoutMs: CRUN_TIMEOUT_MS,
    };
  }

  private get crun(): string {
    return this.opts.crunBin ?? 'crun';
  }

  private get globalArgs(): string[] {
    return this.opts.crunGlobalArgs ?? [];
  }

  private async crunKill(c: Container, args: string[]): Promise<void> {
    try {
      await this.run([this.crun, ...this.globalArgs, 'kill', ...args], {
        timeoutMs: CRUN_TIMEOUT_MS,
      });
    } catch (err) {
      // The container ending between our check and crun's is not an error.
      if (c.init.exited) return;
      throw err;
    }
  }

  private async mountStorages(storages: Storage[], owner: string): Promise<void> {
    for (const s of storages) await this.opts.mounter.mount(s, owner);
  }

  private async resolveDevices(devices: Device[]): Promise<ResolvedDevice[]> {
    const out: ResolvedDevice[] = [];
    for (const d of devices) {
      const drive = await this.opts.blockDevices.find(d.id, d.vmPath || undefined);
      out.push({ containerPath: d.containerPath, drive });
    }
    return out;
  }
}

/** crun's flag that makes it hand the terminal to the relay. */
function consoleArgs(t: TerminalOptions | undefined): string[] {
  return t ? ['--console-socket', t.consoleSocket] : [];
}

async function waitAll(procs: GuestProcess[], timeoutMs: number | undefined): Promise<void> {
  const all = Promise.all(procs.map((p) => p.wait().catch(() => 0)));
  if (timeoutMs === undefined) {
    await all;
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([all, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
}

async function readPidFile(
  file: string,
  gaveUp: () => boolean,
  tries = 100,
): Promise<number | undefined> {
  for (let i = 0; i < tries && !gaveUp(); i++) {
    try {
      const pid = Number((await readFile(file, 'utf8')).trim());
      if (Number.isInteger(pid) && pid > 0) return pid;
    } catch {
      // not written yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

/** Removes only the files the agent wrote, never recursively (a mount could be below). */
async function removeBundle(bundle: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(bundle);
  } catch {
    return;
  }
  for (const n of names) {
    if (n === 'config.json' || n === 'init.pid' || /^exec-.*\.(json|pid)$/.test(n)) {
      await unlink(path.join(bundle, n)).catch(() => {});
    }
  }
  await rmdir(bundle).catch(() => {});
}

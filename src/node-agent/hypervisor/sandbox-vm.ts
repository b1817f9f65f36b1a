// One sandbox's VM: the QEMU config from its spec (pure), and booting it until its agent, reached
// over the serial bridge, answers.
import path from 'node:path';
import type { AgentConnection, RpcObserver } from '../../agent/agent-connection.js';
import type { VmSpec } from '../../crds/index.js';
import type { Logger } from '../../observability/logger.js';
import { bootVm } from './boot.js';
import { chooseMachine } from './machine-type.js';
import type {
  Accelerator,
  DriveConfig,
  MachineType,
  NicConfig,
  RootDiskConfig,
  VmConfig,
} from './qemu-args.js';
import type { LaunchOptions, LaunchStrategyKind, QemuProcess } from './qemu-process.js';
import { vmMemoryMiB, vmVcpus } from '../../crds/index.js';

/** Files of one VM, all in the sandbox's run dir (unix socket paths stay short). */
export function vmFiles(runDir: string) {
  return {
    qmpSocket: path.join(runDir, 'qmp.sock'),
    agentChannelSocket: path.join(runDir, 'agent-channel.sock'),
    grpcSocket: path.join(runDir, 'agent.sock'),
    consoleLog: path.join(runDir, 'console.log'),
    consoleSocket: path.join(runDir, 'console.sock'),
    qemuLog: path.join(runDir, 'qemu.log'),
    pidFile: path.join(runDir, 'qemu.pid'),
  };
}

export interface VmInputs {
  uid: string;
  vm: VmSpec | undefined;
  accelerator: Accelerator;
  kernel: string;
  /** The guest's root: an initrd, or a read-only root drive (the default kernel's erofs image). */
  root: { initrd: string } | { rootDisk: RootDiskConfig };
  runDir: string;
  shareDir: string;
  nics?: readonly NicConfig[];
  drives?: readonly DriveConfig[];
  /** TCG's translation cache (the node agent's --tcg-translation-cache-mib). */
  tcgTranslationCacheMiB?: number;
  /** The node agent's --machine-type (default pc). */
  machine?: MachineType;
  /** The host's TSC rate (host-tsc.ts), given to a TCG guest so it need not calibrate. */
  tscKhz?: number;
}

/** The QEMU config of a sandbox. Pure. */
export function sandboxVmConfig(i: VmInputs): VmConfig {
  const f = vmFiles(i.runDir);
  return {
    name: `ksb-${i.uid}`.slice(0, 63),
    machine: chooseMachine(i.machine ?? 'pc', i.accelerator, i.tscKhz).machine,
    accelerator: i.accelerator,
    ...(i.accelerator === 'tcg' && i.tscKhz !== undefined && { tscKhz: i.tscKhz }),
    vcpus: vmVcpus(i),
    memoryMiB: vmMemoryMiB(i),
    kernel: i.kernel,
    ...i.root,
    console: { logFile: f.consoleLog, socket: f.consoleSocket },
    qmpSocket: f.qmpSocket,
    agentChannelSocket: f.agentChannelSocket,
    sharedDir: i.shareDir,
    pidFile: f.pidFile,
    ...(i.nics && i.nics.length > 0 && { nics: i.nics }),
    ...(i.drives && i.drives.length > 0 && { drives: i.drives }),
    ...(i.tcgTranslationCacheMiB !== undefined && {
      tcgTranslationCacheMiB: i.tcgTranslationCacheMiB,
    }),
  };
}

export interface BootedVm {
  qemu: QemuProcess;
  agent: AgentConnection;
  bootMillis: number;
}

/** Boots the VM and waits for its agent's Health.Check; on failure nothing is left running. */
export async function bootSandboxVm(opts: {
  config: VmConfig;
  qemuLog: string;
  grpcSocket: string;
  qemuBinary: string;
  deadlineMs: number;
  /** Argv QEMU is started behind, e.g. nsenter into the sandbox's network namespace. */
  launchPrefix?: readonly string[];
  /** The drives' descriptors, opened by kata-host-fs right before QEMU runs. */
  fds?: LaunchOptions['fds'];
  /** systemd-scope: QEMU in the transient scope `unit`.scope (detached otherwise). */
  strategy?: LaunchStrategyKind;
  unit?: string;
  onCall?: RpcObserver;
  signal: AbortSignal;
  logger: Logger;
}): Promise<BootedVm> {
  const res = await bootVm({
    vm: opts.config,
    waitFor: {
      kind: 'agent',
      grpcSocket: opts.grpcSocket,
      ...(opts.onCall && { onCall: opts.onCall }),
      checkTimeoutMs: 5_000,
    },
    deadlineMs: opts.deadlineMs,
    stderrLog: opts.qemuLog,
    qemuBinary: opts.qemuBinary,
    ...(opts.launchPrefix && { launchPrefix: opts.launchPrefix }),
    ...(opts.fds && { fds: opts.fds }),
    ...(opts.strategy && { strategy: opts.strategy }),
    ...(opts.unit && { unit: opts.unit }),
    cleanupPaths: [opts.grpcSocket],
    signal: opts.signal,
    logger: opts.logger,
  });
  if (!res.agent) throw new Error('boot returned without an agent connection');
  return { qemu: res.process, agent: res.agent, bootMillis: res.bootMillis };
}

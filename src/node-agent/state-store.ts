// Per-sandbox state on disk (<stateDir>/sandboxes/<uid>/state.json), written atomically (tmp +
// fsync + rename + fsync of the directory) so a restarted node agent finds exactly the steps a
// previous one finished, and resumes or cleans up.
import { readdir, readFile, rm } from 'node:fs/promises';
import { writeJsonAtomic } from '../common/atomic-json.js';
import path from 'node:path';
import type { QemuProcessInfo } from './hypervisor/qemu-process.js';
import type { NetworkStatus } from '../crds/index.js';

export const STATE_VERSION = 1;

export interface ContainerRunState {
  /** CreateContainer succeeded for the current run. */
  created: boolean;
  started: boolean;
  state: 'Waiting' | 'Running' | 'Exited';
  restartCount: number;
  exitCode?: number;
  startedAt?: string;
  finishedAt?: string;
  reason?: string;
  message?: string;
}

export interface QemuState {
  info: QemuProcessInfo;
  accelerator: 'kvm' | 'tcg';
  bootMillis: number;
  startedAt: string;
  /** QEMU's chardev socket of the agent channel; the serial bridge connects to it. */
  agentChannelSocket: string;
  /** The bridge's unix socket grpc-js dials. */
  grpcSocket: string;
}

/** The end of the sandbox, once known: Terminated=True with this reason. */
export interface EndState {
  reason: string;
  message: string;
  at: string;
}

export interface SandboxState {
  version: typeof STATE_VERSION;
  uid: string;
  namespace: string;
  name: string;
  createdAt: string;
  /** The run dir of this sandbox (sockets, console log): removed at cleanup. */
  runDir?: string;
  /** The 9p shared dir, once made. */
  shareDir?: string;
  /** Bind mount targets under the share, in the order they were mounted. */
  bindMounts: string[];
  /** What the network step made (namespace, taps, CNI result); opaque to the rest of the runtime. */
  network?: Record<string, unknown>;
  /** The guest's network as its agent reported it after UpdateInterface/UpdateRoutes. */
  guestNetwork?: NetworkStatus;
  qemu?: QemuState;
  /** Each image container's image, pinned to the digest it got (a resumed create reuses it). */
  images?: Record<string, { reference: string; digest: string }>;
  agentReady: boolean;
  sandboxCreated: boolean;
  containers: Record<string, ContainerRunState>;
  end?: EndState;
  /** The failed step behind `end`, when it was a failure. */
  failure?: {
    condition: 'VMReady' | 'AgentConnected' | 'NetworkReady' | 'ContainersReady';
    reason: string;
    message: string;
  };
  /** When every container first ran (the Ready event and create → Running were recorded). */
  readyAt?: string;
  /** The warm VM this sandbox took instead of booting one (it is the sandbox's for life). */
  warm?: WarmClaim;
  /** Why no warm VM served this sandbox although a pool of the node might have. */
  warmMiss?: string;
}

export interface WarmClaim {
  /** The uid the VM's host objects are named by (cgroup, QEMU's scope, its own netns). */
  vmUid: string;
  pool: string;
  /** QEMU's network namespace (the warm VM's own), removed with the sandbox. */
  netnsName: string;
  claimMillis: number;
  /** The sandbox's block drives were hot-plugged into it. */
  drivesPlugged?: boolean;
}

export function newSandboxState(
  meta: { uid: string; namespace: string; name: string },
  now: Date,
): SandboxState {
  return {
    version: STATE_VERSION,
    uid: meta.uid,
    namespace: meta.namespace,
    name: meta.name,
    createdAt: now.toISOString(),
    bindMounts: [],
    agentReady: false,
    sandboxCreated: false,
    containers: {},
  };
}

const UID_RE = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;

export class StateStore {
  constructor(readonly stateDir: string) {}

  get root(): string {
    return path.join(this.stateDir, 'sandboxes');
  }

  dirOf(uid: string): string {
    if (!UID_RE.test(uid)) throw new Error(`invalid sandbox uid ${JSON.stringify(uid)}`);
    return path.join(this.root, uid);
  }

  fileOf(uid: string): string {
    return path.join(this.dirOf(uid), 'state.json');
  }

  /** Writes the whole state atomically: readers see the old file or the new one, never a mix. */
  async save(state: SandboxState): Promise<void> {
    await writeJsonAtomic(this.fileOf(state.uid), state);
  }

  /** The state of a sandbox; undefined when it has none (or an unreadable one, which is logged by the caller). */
  async load(uid: string): Promise<SandboxState | undefined> {
    let text: string;
    try {
      text = await readFile(this.fileOf(uid), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const parsed = JSON.parse(text) as SandboxState;
    if (parsed.version !== STATE_VERSION || parsed.uid !== uid) {
      throw new Error(`${this.fileOf(uid)}: unexpected version or uid`);
    }
    return parsed;
  }

  /** Uids with a state directory (including ones whose file is missing or broken). */
  async listUids(): Promise<string[]> {
    try {
      const entries = await readdir(this.root, { withFileTypes: true });
      return entries.filter((e) => e.isDirectory() && UID_RE.test(e.name)).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  async remove(uid: string): Promise<void> {
    await rm(this.dirOf(uid), { recursive: true, force: true });
  }
}

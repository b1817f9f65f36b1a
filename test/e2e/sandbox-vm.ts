// Shared by the block and network e2e tests: boots the guest image (make guest) under real QEMU
// with buildQemuArgs + bootVm + the serial bridge + AgentClient, like qemu-boot.test.ts, and runs
// busybox containers through the agent protocol. Not a test file itself.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, copyFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { AgentClient } from '../../src/agent/agent-client.js';
import { constrainSpec } from '../../src/agent/oci-constraints.js';
import { buildContainerSpec } from '../../src/node-agent/oci/container-spec.js';
import { containerRootPath } from '../../src/agent/storage.js';
import type { AgentConnection } from '../../src/agent/agent-connection.js';
import type { ContainerSetup } from '../../src/agent/agent-requests.js';
import type { Device, Storage } from '../../src/generated/agent.js';
import { bootVm } from '../../src/node-agent/hypervisor/boot.js';
import type { VmConfig } from '../../src/node-agent/hypervisor/qemu-args.js';
import type { LaunchOptions, QemuProcess } from '../../src/node-agent/hypervisor/qemu-process.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const IMAGE = path.join(
  process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'),
  'kata-sandbox-operator/guest/current',
);

export function ensureImage(): { kernel: string; initrd: string } {
  execFileSync('make', ['--no-print-directory', 'guest'], {
    cwd: REPO,
    stdio: ['ignore', 'ignore', 'inherit'],
    timeout: 15 * 60_000,
  });
  const vmlinux = path.join(IMAGE, 'vmlinux');
  return {
    kernel: existsSync(vmlinux) ? vmlinux : path.join(IMAGE, 'vmlinuz'),
    initrd: path.join(IMAGE, 'initrd'),
  };
}

/** A minimal busybox root filesystem in `dir` (static busybox, applet symlinks). */
export function busyboxRootfs(dir: string): string {
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc', 'data']) {
    mkdirSync(path.join(dir, d), { recursive: true });
  }
  copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'));
  for (const a of [
    'sh',
    'cat',
    'echo',
    'head',
    'touch',
    'ls',
    'nc',
    'httpd',
    'sleep',
    'mount',
    'hexdump',
    'wget',
    'ip',
  ]) {
    symlinkSync('busybox', path.join(dir, 'bin', a));
  }
  return dir;
}

export interface TestVm {
  process: QemuProcess;
  /** The serial bridge and client that saw the boot through. */
  agent: AgentConnection;
  client: AgentClient;
  bootMillis: number;
  close(): Promise<void>;
}

/** Boots `vm` and waits until the agent answers Check. */
export async function bootTestVm(
  vm: VmConfig,
  dir: string,
  extra: { launchPrefix?: readonly string[]; fds?: LaunchOptions['fds'] } = {},
): Promise<TestVm> {
  const grpcSocket = path.join(dir, 'agent.sock');
  const res = await bootVm({
    vm,
    waitFor: { kind: 'agent', grpcSocket, checkTimeoutMs: 5_000 },
    deadlineMs: 180_000,
    stderrLog: path.join(dir, 'qemu.log'),
    ...(extra.launchPrefix && { launchPrefix: extra.launchPrefix }),
    ...(extra.fds && { fds: extra.fds }),
  });
  const agent = res.agent as AgentConnection;
  return {
    process: res.process,
    agent,
    client: agent.client,
    bootMillis: res.bootMillis,
    close: async () => {
      await agent.close();
      await res.process.stop({ powerdownGraceMs: 0, quitGraceMs: 3_000, qmpTimeoutMs: 2_000 });
    },
  };
}

export function vmConfig(
  dir: string,
  name: string,
  image: { kernel: string; initrd: string },
  overrides: Partial<VmConfig> = {},
): VmConfig {
  mkdirSync(dir, { recursive: true });
  return {
    name,
    machine: 'pc',
    accelerator: 'tcg',
    vcpus: 1,
    memoryMiB: 512,
    kernel: image.kernel,
    initrd: image.initrd,
    console: { logFile: path.join(dir, 'console.log') },
    qmpSocket: path.join(dir, 'qmp.sock'),
    agentChannelSocket: path.join(dir, 'agent-channel.sock'),
    pidFile: path.join(dir, 'qemu.pid'),
    ...overrides,
  };
}

/** A CreateContainer request for a busybox command (the spec built and constrained as the node agent does). */
export function containerRequest(
  containerId: string,
  script: string,
  opts: { storages?: Storage[]; devices?: Device[]; readonlyRoot?: boolean } = {},
): ContainerSetup {
  const built = buildContainerSpec({
    container: {
      name: containerId,
      command: ['/bin/sh', '-c', script],
      devices: (opts.devices ?? []).map((d) => ({
        hostPath: '/unused',
        containerPath: d.containerPath,
      })),
    },
    field: `containers[${containerId}]`,
    hostname: 'sandbox',
    volumeGuestPaths: new Map(),
  });
  const spec = constrainSpec(built.spec);
  spec.Root = { Path: containerRootPath(containerId), Readonly: opts.readonlyRoot ?? false };
  return {
    containerId,
    stringUser: built.stringUser,
    devices: opts.devices ?? [],
    storages: opts.storages ?? [],
    oci: spec,
  };
}

/** Reads a process's stdout until EOF (or maxBytes). */
export async function readAll(
  client: AgentClient,
  containerId: string,
  execId: string,
  stream: 'stdout' | 'stderr' = 'stdout',
  maxBytes = 1 << 20,
): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const b =
      stream === 'stdout'
        ? await client.readStdout(containerId, execId, 64 * 1024, { timeoutMs: 60_000 })
        : await client.readStderr(containerId, execId, 64 * 1024, { timeoutMs: 60_000 });
    if (b.length === 0) break;
    chunks.push(b);
    total += b.length;
    if (total >= maxBytes) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Creates, starts and waits for a container; returns its exit status, stdout and stderr. */
export async function runContainer(
  client: AgentClient,
  req: ContainerSetup,
): Promise<{ status: number; stdout: string; stderr: string }> {
  await client.createContainer(req, { timeoutMs: 60_000 });
  await client.startContainer(req.containerId, { timeoutMs: 60_000 });
  const [stdout, stderr, status] = await Promise.all([
    readAll(client, req.containerId, req.containerId, 'stdout'),
    readAll(client, req.containerId, req.containerId, 'stderr'),
    client.waitProcess(req.containerId, req.containerId, { timeoutMs: 120_000 }),
  ]);
  return { status, stdout, stderr };
}

/** Runs a command on the host, returning stdout (argv, timeout). */
export function sh(argv: string[], timeoutMs = 60_000): string {
  const [cmd, ...args] = argv;
  return execFileSync(cmd!, args, {
    encoding: 'utf8',
    timeout: timeoutMs,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs and ignores failures (cleanup). */
export function trySh(argv: string[], timeoutMs = 30_000): void {
  try {
    sh(argv, timeoutMs);
  } catch {
    // best effort
  }
}

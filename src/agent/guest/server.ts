// Builds the agent's parts and serves AgentService + Health on a unix socket.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { runCommandOk, type CommandRunner } from '../../common/run-command.js';
import { AgentServiceService } from '../../generated/agent.js';
import { HealthService } from '../../generated/health.js';
import type { Logger } from '../../observability/logger.js';
import { BlockDevices } from './block-devices.js';
import { ContainerManager } from './container-manager.js';
import { ContainerStats } from './container-stats.js';
import { OomEvents } from './oom-events.js';
import { GuestSystem } from './guest-system.js';
import { GuestNetwork } from './network.js';
import { Sandbox } from './sandbox.js';
import { agentService, healthService } from './service.js';
import { StorageMounter } from './storage-mounter.js';

export interface AgentServerOptions {
  socketPath: string;
  logger: Logger;
  /** Defaults are the guest's real paths; tests point them elsewhere. */
  bundleRoot?: string;
  hostnameFile?: string;
  resolvConf?: string;
  containerResolvConf?: string;
  sysBlockDir?: string;
  crunBin?: string;
  crunGlobalArgs?: string[];
  makeDir?: (dir: string) => Promise<unknown>;
  memoryBlockSizeFile?: string;
  meminfoFile?: string;
  cgroupRoot?: string;
  procRoot?: string;
  ipBin?: string;
  run?: CommandRunner;
  cpuDir?: string;
  memoryDir?: string;
  randomDev?: string;
  copyFileRoot?: string;
  ttyRelayBin?: string;
  consoleDir?: string;
}

export interface AgentServer {
  server: Server;
  socketPath: string;
  close(): Promise<void>;
}

export async function startAgentServer(opts: AgentServerOptions): Promise<AgentServer> {
  const { logger } = opts;
  const blockDevices = new BlockDevices({ sysBlockDir: opts.sysBlockDir });
  const mounter = new StorageMounter({ run: opts.run, blockDevices, makeDir: opts.makeDir });
  const containers = new ContainerManager({
    mounter,
    blockDevices,
    logger,
    bundleRoot: opts.bundleRoot,
    crunBin: opts.crunBin,
    crunGlobalArgs: opts.crunGlobalArgs,
    run: opts.run,
    ttyRelayBin: opts.ttyRelayBin,
    consoleDir: opts.consoleDir,
  });
  const sandbox = new Sandbox({
    mounter,
    containers,
    logger,
    hostnameFile: opts.hostnameFile,
    resolvConf: opts.resolvConf,
    containerResolvConf: opts.containerResolvConf,
  });
  const network = new GuestNetwork({ run: opts.run, ipBin: opts.ipBin });
  const stats = new ContainerStats({
    initPid: (id) => containers.initPid(id),
    cgroupRoot: opts.cgroupRoot,
    procRoot: opts.procRoot,
  });
  const oom = new OomEvents({
    ids: () => containers.ids(),
    cgroupDir: (id) => stats.containerCgroupDir(id),
  });
  const system = new GuestSystem({
    run: opts.run,
    cpuDir: opts.cpuDir,
    memoryDir: opts.memoryDir,
    randomDev: opts.randomDev,
  });

  // Nothing in the guest reads channelz: its per-call bookkeeping is work for nothing.
  const server = new Server({ 'grpc.enable_channelz': 0 });
  server.addService(
    AgentServiceService,
    agentService({
      sandbox,
      containers,
      network,
      stats,
      system,
      oom,
      logger,
      memoryBlockSizeFile: opts.memoryBlockSizeFile,
      meminfoFile: opts.meminfoFile,
      copyFileRoot: opts.copyFileRoot,
      run: opts.run ?? runCommandOk,
    }),
  );
  server.addService(HealthService, healthService(logger));

  await mkdir(path.dirname(opts.socketPath), { recursive: true });
  // A socket left by an earlier run would make bind fail with EADDRINUSE.
  await rm(opts.socketPath, { force: true });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${opts.socketPath}`, ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  logger.info({ socket: opts.socketPath }, 'agent gRPC server listening');
  return {
    server,
    socketPath: opts.socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        // Blocking reads and waits would hold a graceful shutdown open.
        setTimeout(() => server.forceShutdown(), 1_000).unref();
      }),
  };
}

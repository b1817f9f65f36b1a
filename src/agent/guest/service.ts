// The gRPC handlers: each RPC validates through the agent's parts and ends with their status.
import type { CommandRunner } from '../../common/run-command.js';
import type { AgentServiceServer } from '../../generated/agent.js';
import type { HealthServer } from '../../generated/health.js';
import type { Logger } from '../../observability/logger.js';
import type { ContainerManager } from './container-manager.js';
import type { ContainerStats } from './container-stats.js';
import * as health from './health.js';
import { copyFile } from './copy-file.js';
import type { GuestSystem } from './guest-system.js';
import type { GuestNetwork } from './network.js';
import type { OomEvents } from './oom-events.js';
import { filterPsOutput, psArgv } from './process-list.js';
import type { Sandbox } from './sandbox.js';
import { instant, unary, type Handler } from './rpc-adapters.js';
import { endOfStream, failedPrecondition, invalidArgument } from './status-error.js';
import { validateContainerId, validateId } from './path-guard.js';
import { sizeLine } from './tty-control.js';

export interface AgentParts {
  sandbox: Sandbox;
  containers: ContainerManager;
  network: GuestNetwork;
  stats: ContainerStats;
  system: GuestSystem;
  oom: OomEvents;
  /** Where CopyFile may write (default /run/kata-containers/). */
  copyFileRoot?: string;
  logger: Logger;
  memoryBlockSizeFile?: string;
  meminfoFile?: string;
  run: CommandRunner;
}

const empty = {};

/** Ids from the request, checked before they are looked up so messages name the field. */
function ids(req: { containerId: string; execId: string }): { cid: string; eid: string } {
  validateContainerId('container_id', req.containerId);
  if (req.execId !== '') validateId('exec_id', req.execId);
  return { cid: req.containerId, eid: req.execId };
}

export function agentService(parts: AgentParts): AgentServiceServer {
  const { containers: cm, sandbox, network, system, logger } = parts;
  const u = <Q, R>(rpc: string, fn: Handler<Q, R>) => unary(rpc, logger, fn);
  return {
    createContainer: u('CreateContainer', async (req) => {
      await cm.create(req);
      return empty;
    }),
    startContainer: u('StartContainer', async (req) => {
      validateContainerId('container_id', req.containerId);
      await cm.start(req.containerId);
      await parts.oom.track(req.containerId);
      return empty;
    }),
    removeContainer: u('RemoveContainer', async (req) => {
      validateContainerId('container_id', req.containerId);
      // A last reading before its cgroup goes: a kill not asked for yet stays queued (1.x held it).
      await parts.oom.poll();
      await cm.remove(req.containerId, req.timeout);
      return empty;
    }),
    execProcess: u('ExecProcess', async (req) => {
      validateContainerId('container_id', req.containerId);
      await cm.exec(req);
      return empty;
    }),
    signalProcess: u('SignalProcess', async (req) => {
      const { cid, eid } = ids(req);
      await cm.signal(cid, eid, req.signal);
      return empty;
    }),
    waitProcess: u('WaitProcess', async (req, signal) => {
      const { cid, eid } = ids(req);
      return { status: await cm.process(cid, eid).wait(signal) };
    }),
    writeStdin: u('WriteStdin', async (req) => {
      const { cid, eid } = ids(req);
      return { len: await cm.process(cid, eid).writeStdin(req.data) };
    }),
    // A drained, ended stream reads as empty; the caller is told with Kata 1.x's EOF status.
    readStdout: u('ReadStdout', async (req, signal) => {
      const { cid, eid } = ids(req);
      const data = await cm.process(cid, eid).stdout.read(req.len, signal);
      if (data.length === 0) throw endOfStream();
      return { data };
    }),
    readStderr: u('ReadStderr', async (req, signal) => {
      const { cid, eid } = ids(req);
      const data = await cm.process(cid, eid).stderr.read(req.len, signal);
      if (data.length === 0) throw endOfStream();
      return { data };
    }),
    closeStdin: u('CloseStdin', async (req) => {
      const { cid, eid } = ids(req);
      cm.process(cid, eid).closeStdin();
      return empty;
    }),
    ttyWinResize: u('TtyWinResize', async (req) => {
      const { cid, eid } = ids(req);
      sizeLine(req.row, req.column);
      await cm.process(cid, eid).resize(req.row, req.column);
      return empty;
    }),
    updateInterface: u('UpdateInterface', (req) => network.updateInterface(req.interface!)),
    updateRoutes: u('UpdateRoutes', async (req) => ({
      Routes: await network.updateRoutes(req.routes?.Routes ?? []),
    })),
    listInterfaces: u('ListInterfaces', async () => ({
      Interfaces: await network.listInterfaces(),
    })),
    listRoutes: u('ListRoutes', async () => ({ Routes: await network.listRoutes() })),
    createSandbox: u('CreateSandbox', async (req) => {
      await sandbox.create(req);
      return empty;
    }),
    destroySandbox: u('DestroySandbox', async () => {
      const errors = await sandbox.destroy();
      if (errors.length > 0) {
        throw failedPrecondition(`DestroySandbox left: ${errors.map((e) => e.message).join('; ')}`);
      }
      return empty;
    }),
    getGuestDetails: u('GetGuestDetails', (req) =>
      health.guestDetails(req, parts.memoryBlockSizeFile, parts.meminfoFile),
    ),
    statsContainer: u('StatsContainer', (req) => {
      validateContainerId('container_id', req.containerId);
      return parts.stats.stats(req.containerId);
    }),
    listProcesses: u('ListProcesses', async (req) => {
      validateContainerId('container_id', req.containerId);
      if (req.format !== 'json' && req.format !== 'table') {
        throw invalidArgument(`format ${JSON.stringify(req.format)} is not "table" or "json"`);
      }
      const argv = req.format === 'table' ? psArgv(req.args) : [];
      const pids = await cm.pids(req.containerId);
      if (req.format === 'json') return { processList: Buffer.from(JSON.stringify(pids)) };
      const ps = await parts.run(argv, { timeoutMs: 10_000 });
      return { processList: Buffer.from(filterPsOutput(ps.stdout.toString(), pids)) };
    }),
    updateContainer: u('UpdateContainer', async (req) => {
      validateContainerId('container_id', req.containerId);
      await cm.update(req.containerId, req.resources);
      return empty;
    }),
    pauseContainer: u('PauseContainer', async (req) => {
      validateContainerId('container_id', req.containerId);
      await cm.pause(req.containerId);
      return empty;
    }),
    resumeContainer: u('ResumeContainer', async (req) => {
      validateContainerId('container_id', req.containerId);
      await cm.resume(req.containerId);
      return empty;
    }),
    addArpNeighbors: u('AddARPNeighbors', async (req) => {
      // 1.x refuses a request without its neighbour list.
      if (!req.neighbors) throw invalidArgument('neighbors is missing');
      await network.addArpNeighbors(req.neighbors.ARPNeighbors);
      return empty;
    }),
    onlineCpuMem: u('OnlineCPUMem', async (req) => {
      await system.onlineCpuMem(req);
      return empty;
    }),
    reseedRandomDev: u('ReseedRandomDev', async (req) => {
      await system.reseedRandom(req.data);
      return empty;
    }),
    setGuestDateTime: u('SetGuestDateTime', async (req) => {
      await system.setDateTime(req.Sec, req.Usec);
      return empty;
    }),
    copyFile: u('CopyFile', async (req) => {
      await copyFile(req, parts.copyFileRoot);
      return empty;
    }),
    getOomEvent: u('GetOOMEvent', async (_req, signal) => ({
      containerId: await parts.oom.next(signal),
    })),
    memHotplugByProbe: u('MemHotplugByProbe', async (req) => {
      await system.probeMemory(req.memHotplugProbeAddr);
      return empty;
    }),
  };
}

export function healthService(logger: Logger): HealthServer {
  return {
    check: instant('Check', logger, async () => health.check()),
    version: instant('Version', logger, async () => health.version()),
  };
}

// The containers of one booted sandbox: CreateContainer + StartContainer for each run, a watch on
// each until it exits (its output into its log), restarts by the restart policy with kubelet's
// back-off, the sandbox's end once every container is done, and the graceful stop on deletion
// (SIGTERM, the grace period, SIGKILL, RemoveContainer). It knows the runtime only through the
// narrow ContainerHost below.
import path from 'node:path';
import type { AgentClient } from '../../agent/agent-client.js';
import { constrainSpec } from '../../agent/oci-constraints.js';
import { CONTAINER_RESOLV_CONF, GUEST_SHARED_DIR } from '../../agent/storage.js';
import type { KataSandboxSpec } from '../../crds/index.js';
import type { Logger } from '../../observability/logger.js';
import { pause } from '../../common/sleep.js';
import type { NodeAgentConfig } from '../config.js';
import { ContainerLog, sandboxLogDir } from './container-log.js';
import { OutputTap } from './output-tap.js';
import {
  containerFailedMessage,
  restartBackoffMs,
  shouldRestart,
  watchContainerRun,
} from './container-run.js';
import type { PreparedImage } from '../images/container-images.js';
import { buildContainerSpec } from '../oci/container-spec.js';
import type { StepFailure } from './sandbox-status.js';
import { VOLUMES_DIR } from '../storage/shared-dir.js';
import type { ContainerRunState, SandboxState } from '../state-store.js';
import type { BlockDrivePlan } from '../storage/block-drives.js';
import { alreadyDone, classify, step } from './step-failure.js';
import { inBackground } from '../../common/background.js';

const SIGTERM = 15;
const SIGKILL = 9;

/** What the supervisor needs of its sandbox's runtime. */
export interface ContainerHost {
  readonly spec: KataSandboxSpec;
  readonly state: SandboxState;
  readonly log: Logger;
  readonly config: Pick<NodeAgentConfig, 'logDir' | 'logMaxBytes' | 'logMaxFiles'>;
  /** Aborts when the sandbox stops being watched (release, destroy). */
  readonly signal: AbortSignal;
  stopping(): boolean;
  ended(): boolean;
  /** The agent of the running VM; throws (AgentLost) without one. */
  client(): AgentClient;
  /** The agent, if connected, without throwing. */
  agent(): AgentClient | undefined;
  vmRunning(): boolean;
  /** What the create steps prepared for the containers: image configs, block storages. */
  image(name: string): PreparedImage['handle'] | undefined;
  blockPlan(): BlockDrivePlan | undefined;
  save(): Promise<void>;
  /** Something status shows changed. */
  changed(): void;
  /** Every container runs (the first time): the sandbox is Ready. */
  allRunning(): void;
  end(end: { reason: string; message: string }, failure?: StepFailure): Promise<void>;
  fail(failure: StepFailure): Promise<void>;
}

export class ContainerSupervisor {
  private readonly watchers = new Map<string, Promise<void>>();
  private readonly restarting = new Set<string>();
  private readonly logs = new Map<string, ContainerLog>();
  private readonly taps = new Map<string, OutputTap>();

  constructor(private readonly host: ContainerHost) {}

  /** A container's log file (rotated), made on first use. */
  logOf(name: string): ContainerLog {
    let log = this.logs.get(name);
    if (!log) {
      const { config, state } = this.host;
      log = new ContainerLog({
        file: path.join(sandboxLogDir(config.logDir, state), `${name}.log`),
        maxBytes: config.logMaxBytes,
        maxFiles: config.logMaxFiles,
      });
      this.logs.set(name, log);
    }
    return log;
  }

  /** Where a container's output goes besides its log (attach), made on first use. */
  tapOf(name: string): OutputTap {
    let tap = this.taps.get(name);
    if (!tap) {
      tap = new OutputTap();
      this.taps.set(name, tap);
    }
    return tap;
  }

  /** Brings one container to where its recorded state says it should be: run, watched or done. */
  async resume(name: string, signal: AbortSignal): Promise<void> {
    const st = this.host.state.containers[name];
    if (st?.state === 'Exited') this.afterExit(name);
    else if (st?.started) this.watch(name);
    else {
      await this.run(name, signal);
      this.watch(name);
    }
  }

  /** CreateContainer + StartContainer for one run of a container. */
  private async run(name: string, signal: AbortSignal): Promise<void> {
    const { spec, state } = this.host;
    const index = spec.containers.findIndex((c) => c.name === name);
    const c = spec.containers[index];
    if (!c) return;
    const prev = state.containers[name];
    const st: ContainerRunState = {
      created: false,
      started: false,
      state: 'Waiting',
      restartCount: prev?.restartCount ?? 0,
      reason: 'ContainerCreating',
    };
    state.containers[name] = st;
    const client = this.host.client();
    const plan = this.host.blockPlan();
    const blockRootfs = plan?.rootfsStorages.get(name);
    await step('ContainersReady', 'CreateContainerFailed', async () => {
      const volumeGuestPaths = new Map(
        (spec.volumes ?? []).map((v) => [
          v.name,
          path.posix.join(GUEST_SHARED_DIR, VOLUMES_DIR, v.name),
        ]),
      );
      const image = this.host.image(name);
      const built = buildContainerSpec({
        container: c,
        ...(image && { image: image.config, imageUserGroups: image.userGroups }),
        field: `spec.containers[${index}]`,
        hostname: spec.hostname ?? state.name.slice(0, 63),
        volumeGuestPaths,
        resolvConf: CONTAINER_RESOLV_CONF,
      });
      const setup = {
        containerId: name,
        stringUser: built.stringUser,
        devices: plan?.devices.get(name) ?? [],
        storages: blockRootfs ? [blockRootfs] : [],
        oci: constrainSpec(built.spec),
      };
      await client.createContainer(setup, { signal }).catch((err) => {
        if (!alreadyDone(err)) throw err;
      });
      st.created = true;
      await this.host.save();
      await client.startContainer(name, { signal }).catch((err) => {
        if (!alreadyDone(err)) throw err;
      });
    });
    Object.assign(st, { started: true, state: 'Running', startedAt: new Date().toISOString() });
    delete st.reason;
    await this.host.save();
    this.host.log.info({ container: name, restartCount: st.restartCount }, 'container started');
    if (spec.containers.every((x) => state.containers[x.name]?.state === 'Running')) {
      this.host.allRunning();
    }
    this.host.changed();
  }

  /** Waits for the container's exit in the background, its output going to its log. */
  watch(name: string): void {
    const client = this.host.agent();
    if (this.watchers.has(name) || !client) return;
    const host = this.host;
    const w = watchContainerRun(client, name, this.logOf(name), host.signal, this.tapOf(name)).then(
      async (status) => {
        this.watchers.delete(name);
        const st = host.state.containers[name];
        if (!st) return;
        Object.assign(st, {
          state: 'Exited',
          exitCode: status,
          finishedAt: new Date().toISOString(),
        });
        st.reason = status === 0 ? 'Completed' : 'Error';
        host.log.info({ container: name, exitCode: status }, 'container exited');
        await host.save();
        host.changed();
        if (!host.stopping()) this.afterExit(name);
      },
      (err: unknown) => {
        this.watchers.delete(name);
        if (host.stopping() || host.signal.aborted) return;
        host.log.warn({ err, container: name }, 'lost the container watch');
        // The agent went away with QEMU running: the VM watch reports a QEMU exit; otherwise retry.
        setTimeout(() => {
          if (!host.stopping() && host.vmRunning()) this.watch(name);
        }, 1_000).unref();
      },
    );
    this.watchers.set(name, w);
  }

  /** After a container exited: restart it per policy, or see whether the sandbox ended. */
  private afterExit(name: string): void {
    const host = this.host;
    const st = host.state.containers[name];
    if (!st || st.state !== 'Exited' || host.stopping() || this.restarting.has(name)) return;
    if (shouldRestart(host.spec.restartPolicy, st.exitCode ?? 1) && st.reason !== 'VMExited') {
      this.restarting.add(name);
      const delay = restartBackoffMs(st.restartCount);
      // kubelet's word for a container waiting to be restarted after failing.
      st.reason = 'CrashLoopBackOff';
      st.message = `back-off ${Math.round(delay / 1000)}s restarting failed container ${name} (exit code ${st.exitCode ?? 'unknown'})`;
      host.changed();
      inBackground(`restarting container ${name}`, this.restartAfter(name, st, delay), host.log);
      return;
    }
    this.checkAllDone();
  }

  private async restartAfter(name: string, st: ContainerRunState, delay: number): Promise<void> {
    const host = this.host;
    await pause(delay, host.signal);
    if (host.stopping()) return;
    try {
      await host.client().removeContainer(name, 1);
    } catch (err) {
      host.log.warn({ err, container: name }, 'RemoveContainer before restart failed');
    }
    const count = st.restartCount + 1;
    await this.logOf(name)
      .newRun()
      .catch((err: unknown) =>
        host.log.warn({ err, container: name }, 'keeping the previous log failed'),
      );
    host.state.containers[name] = { ...st, restartCount: count };
    try {
      await this.run(name, host.signal);
      const now = host.state.containers[name];
      if (now) now.restartCount = count;
      await host.save();
      this.restarting.delete(name);
      this.watch(name);
    } catch (err) {
      this.restarting.delete(name);
      if (!host.stopping()) await host.fail(classify(err, 'ContainersReady', 'RestartFailed'));
    }
  }

  /** Every container exited and none restarts: the sandbox Succeeded or Failed. */
  checkAllDone(): void {
    const host = this.host;
    if (host.ended() || host.stopping() || this.restarting.size > 0) return;
    const sts = host.spec.containers.map((c) => ({
      name: c.name,
      st: host.state.containers[c.name],
    }));
    if (!sts.every((x) => x.st?.state === 'Exited')) return;
    const failed = sts.find((x) => (x.st?.exitCode ?? 1) !== 0);
    const ending = async (): Promise<void> => {
      if (!failed) {
        await host.end({ reason: 'Succeeded', message: 'every container exited with code 0' });
        return;
      }
      const lines = await this.logOf(failed.name).tail(10);
      const message = containerFailedMessage(failed.name, failed.st?.exitCode ?? 1, lines);
      await host.end(
        { reason: 'ContainerFailed', message },
        { condition: 'ContainersReady', reason: 'ContainerFailed', message },
      );
    };
    inBackground('ending the sandbox', ending(), host.log);
  }

  /**
   * Deletion: SIGTERM to every running container, up to the grace period for them to exit,
   * SIGKILL to the rest, then RemoveContainer for all. Best effort: the VM goes next anyway.
   */
  async stopAll(): Promise<void> {
    const host = this.host;
    const client = host.agent();
    if (!client || !host.vmRunning()) return;
    const grace = (host.spec.terminationGracePeriodSeconds ?? 30) * 1000;
    const running = Object.entries(host.state.containers)
      .filter(([, st]) => st.state === 'Running')
      .map(([name]) => name);
    await Promise.all(running.map((n) => client.signalProcess(n, '', SIGTERM).catch(() => {})));
    const settled = async (ms: number): Promise<boolean> => {
      const all = Promise.all(running.map((n) => this.watchers.get(n)).filter(Boolean));
      let t: NodeJS.Timeout | undefined;
      const r = await Promise.race([
        all.then(() => true),
        new Promise<boolean>((res) => (t = setTimeout(() => res(false), ms))),
      ]);
      clearTimeout(t);
      return r;
    };
    if (!(await settled(grace))) {
      host.log.info('grace period over: SIGKILL');
      await Promise.all(running.map((n) => client.signalProcess(n, '', SIGKILL).catch(() => {})));
      await settled(5_000);
    }
    for (const name of Object.keys(host.state.containers)) {
      await client.removeContainer(name, 1).catch(() => {});
    }
  }
}

#!/usr/bin/env node
// kata-node-agent: heartbeats its node's Lease (on a worker thread running this same file, so no
// sandbox's work on the main thread can stall it), watches the KataSandboxes labelled for its node,
// and runs each as a QEMU VM. On SIGTERM it stops watching and leaves VMs running: they outlive
// the agent, and the next one adopts them.
import path from 'node:path';
import PQueue from 'p-queue';
import {
  CRD_GROUP,
  CRD_VERSION,
  NODE_LABEL,
  PLURAL,
  vmMemoryMiB,
  vmVcpus,
  WARM_POOL_PLURAL,
  type KataSandbox,
  type KataWarmPool,
} from '../crds/index.js';
import { EventRecorder } from '../kube/events.js';
import { Informer } from '../kube/informer.js';
import { probeHostFs } from './host-fs/index.js';
import { loadKubeConfigStrict, makeClients } from '../kube/kube-client.js';
import { NodeHeartbeatThread } from '../kube/node-heartbeat-thread.js';
import { isNodeHeartbeatWorker, runNodeHeartbeatWorker } from '../kube/node-heartbeat-worker.js';
import { objectKey } from '../kube/object-cache.js';
import { WorkQueue } from '../kube/work-queue.js';
import { startMetricsServer } from '../observability/metrics-server.js';
import { createLogger } from '../observability/logger.js';
import { NODE_AGENT_HELP, nodeAgentConfig } from './config.js';
import { chooseAccelerator, kvmBootProbe } from './hypervisor/accelerator.js';
import { resolveGuestImage } from './hypervisor/guest-image.js';
import { ContainerImages } from './images/container-images.js';
import { ImageStore } from './images/image-store.js';
import { RootfsViews } from './images/rootfs-view.js';
import { nodeAgentMetrics } from './metrics/node-agent-metrics.js';
import { NodeReconciler } from './node-reconciler.js';
import type { SandboxRuntime } from './runtime/sandbox-runtime.js';
import { loadOrCreateNodeKey } from './images/pull-secret-key.js';
import { nodeIdentityProblem, reviewNodeIdentityRetrying } from './node-identity.js';
import { ProjectedPullSecrets, type NodeKeys } from './images/pull-secrets.js';
import { nodeKeyAnnotations } from '../kube/pull-secret-projection.js';
import { StateStore } from './state-store.js';
import { SandboxNetwork, storedNetnsClaims } from './network/sandbox-network.js';
import { VmCgroups } from './cgroups/vm-cgroups.js';
import { NODE_LEASE_DURATION_SECONDS, type NodeAllocation } from '../kube/lease.js';
import { processShutdown } from '../common/process-shutdown.js';
import { startStreamEndpoint } from './stream/stream-endpoint.js';
import type { StreamServer } from './stream/stream-server.js';
import { CONSOLE_CHECK_MS, capConsoleLog } from './runtime/console-cap.js';
import { vmFiles } from './hypervisor/sandbox-vm.js';
import { chooseMachine, machineFor } from './hypervisor/machine-type.js';
import { hostTscKhz } from './hypervisor/host-tsc.js';
import { nodeSandboxHost } from './runtime/sandbox-host.js';
import { WarmPools } from './warm-pool/warm-pools.js';
import { WarmVmStore } from './warm-pool/warm-vm-store.js';

const log = createLogger('kata-node-agent');
/** Deadline of each guest call of the periodic sampling: a busy guest is skipped, not waited for. */
const GUEST_STATS_TIMEOUT_MS = 5_000;
/** How long a sandbox being created holds warm refills back at most. */
const REFILL_HOLD_MS = 60_000;

async function main(): Promise<void> {
  const cfg = nodeAgentConfig(process.argv.slice(2), process.env);
  if (cfg.help) {
    process.stdout.write(NODE_AGENT_HELP);
    return;
  }
  // Every host path goes through kata-host-fs: a missing helper or a kernel without openat2 and
  // mount_setattr is a start-up error, not a failure at the first sandbox.
  const probed = await probeHostFs({ binary: cfg.hostFsBinary });
  log.info({ binary: cfg.hostFsBinary, kernel: probed.kernel }, 'kata-host-fs ready');
  // VMs in cgroups of their own (detached launch; systemd makes scopes itself): hierarchies that
  // cannot be found are a start-up error too.
  const vmCgroups =
    cfg.vmCgroupParent === 'none' || cfg.qemuLaunch === 'systemd-scope'
      ? undefined
      : new VmCgroups({
          root: cfg.cgroupRoot,
          parent: cfg.vmCgroupParent,
          logger: log.child({ subsystem: 'vm-cgroups' }),
        });
  if (vmCgroups) {
    log.info({ hierarchies: await vmCgroups.hierarchyMounts() }, 'VM cgroups ready');
  }
  // The machine type TCG VMs really get (machine-type.ts): said once here, not per boot.
  const machine = chooseMachine(machineFor(cfg.machineType, 'sandbox'), 'tcg', hostTscKhz());
  if (machine.fallback) log.warn({ why: machine.fallback }, 'TCG VMs boot on pc, not microvm');
  else {
    log.info(
      {
        machineType: cfg.machineType,
        sandboxVms: machine.machine,
        warmVms: machineFor(cfg.machineType, 'warm'),
      },
      'machine type',
    );
  }
  const kc = loadKubeConfigStrict(cfg.kubeconfig);
  const clients = makeClients(kc);
  const stop = new AbortController();
  const store = new StateStore(cfg.stateDir);

  const sandboxes = new Informer<KataSandbox>(kc, {
    path: `/apis/${CRD_GROUP}/${CRD_VERSION}/${PLURAL}`,
    labelSelector: `${NODE_LABEL}=${cfg.nodeName}`,
    logger: log.child({ informer: 'katasandboxes' }),
  });
  // The closures below read the reconciler and the heartbeat made further down; none runs
  // before they exist (the probe server starts after both).
  const runtimes = (): SandboxRuntime[] => [...rec.runtimes.values()];
  // What the node's sandboxes that have not ended hold: a metric and the Lease say it.
  const live = (): SandboxRuntime[] => runtimes().filter((r) => !r.state.end);
  let warmReady: Record<string, number> = {};
  const allocation = (): NodeAllocation => ({
    sandboxes: live().length,
    memoryMiB: live().reduce((n, r) => n + vmMemoryMiB(r.spec), 0),
    vcpus: live().reduce((n, r) => n + vmVcpus(r.spec), 0),
    warmReady,
  });
  const endpoint: { server?: StreamServer } = {};
  const metrics = nodeAgentMetrics({
    openStreams: () => endpoint.server?.openStreams ?? 0,
    phases: () => {
      const counts = new Map<string, number>();
      for (const sb of sandboxes.list()) {
        const p = sb.status?.phase ?? 'Pending';
        counts.set(p, (counts.get(p) ?? 0) + 1);
      }
      return counts;
    },
    runningQemu: () => runtimes().filter((r) => r.qemuPid !== undefined).length,
    node: cfg.nodeName,
    sandboxUsage: () =>
      runtimes().map((r) => ({
        namespace: r.state.namespace,
        name: r.state.name,
        ...(r.qemuPid !== undefined && { qemuPid: r.qemuPid }),
        restarts: Object.values(r.state.containers).reduce((n, c) => n + c.restartCount, 0),
        ...(r.guestSample && { guest: r.guestSample }),
      })),
    heartbeat: () => ({
      lastRenewed: heartbeat.lastRenewed,
      starts: heartbeat.starts,
    }),
    capacity: { sandboxes: cfg.maxSandboxes, memoryMiB: cfg.memoryMiB },
    allocated: () => allocation(),
    warmVms: () => warmPools.vmCounts(),
  });
  const events = new EventRecorder({
    clients,
    reportingController: 'kata.sandbox.io/node-agent',
    reportingInstance: `kata-node-agent-${cfg.nodeName}`,
    logger: log,
  });
  // Pull secrets reach this node sealed to its own key, published on its Lease, and only if the
  // API server vouches that these credentials belong to this node (docs/images.md).
  const identity = await reviewNodeIdentityRetrying(kc, 10, stop.signal);
  const refused = nodeIdentityProblem(identity, cfg.nodeName);
  let nodeKeys: NodeKeys;
  let keyAnnotations: Record<string, string> = {};
  if (refused) {
    log.warn({ why: refused }, 'no pull-secret key published: imagePullSecrets are refused');
    nodeKeys = { refused };
  } else {
    const key = await loadOrCreateNodeKey(cfg.stateDir, log);
    log.info(
      { fingerprint: key.published.fingerprint, created: key.created },
      'pull-secret key ready',
    );
    nodeKeys = { keys: key.keys, fingerprint: key.published.fingerprint };
    keyAnnotations = nodeKeyAnnotations(key.published);
  }
  // kata-api reads logs through this endpoint, found and trusted by what the Lease says.
  const stream = await startStreamEndpoint(cfg, kc, runtimes, log.child({ subsystem: 'stream' }));
  endpoint.server = stream.server;
  // The worker loads the kubeconfig from the same source (its own client, its own token reads).
  const heartbeat = new NodeHeartbeatThread({
    script: new URL(import.meta.url),
    ...(cfg.kubeconfig !== undefined && { kubeconfig: cfg.kubeconfig }),
    nodeName: cfg.nodeName,
    capacity: { sandboxes: cfg.maxSandboxes, memoryMiB: cfg.memoryMiB },
    annotations: { ...keyAnnotations, ...stream.annotations },
    logger: log,
  });
  const pullSecrets = new ProjectedPullSecrets({
    clients,
    nodeName: cfg.nodeName,
    node: nodeKeys,
    logger: log.child({ subsystem: 'pull-secrets' }),
  });

  const imageLog = log.child({ subsystem: 'images' });
  const imageStore = await ImageStore.open({
    root: cfg.imageCacheDir ?? path.join(cfg.stateDir, 'images'),
    maxBytes: cfg.imageCacheMaxBytes,
    insecureRegistries: cfg.insecureRegistries,
    copyTimeoutMs: cfg.imagePullTimeoutMs,
    unpackTimeoutMs: cfg.imagePullTimeoutMs,
    metrics: metrics.images,
    logger: imageLog,
  });
  // One views root for image views and hostPath rootfs views (each sandbox's overlay).
  const views = new RootfsViews({
    root: path.join(cfg.stateDir, 'rootfs-views'),
    lowerRoots: [imageStore.imagesDir],
    logger: imageLog,
  });
  const images = new ContainerImages({
    store: imageStore,
    views,
    allowedRegistries: cfg.allowedRegistries,
    backoff: {
      initialMs: cfg.imagePullBackoffMs,
      maxMs: Math.max(cfg.imagePullBackoffMs, 300_000),
    },
    logger: imageLog,
  });

  const kvmProbe = kvmBootProbe({
    kernel: resolveGuestImage({ ...(cfg.guestImageDir && { imageDir: cfg.guestImageDir }) }).kernel,
    timeoutMs: 5_000,
  });
  // Paused until recovery is done: what recovery enqueues waits for it.
  const queue = new WorkQueue({
    reconcile: (key) => rec.reconcile(key),
    concurrency: cfg.concurrency,
    logger: log,
    paused: true,
  });
  const guestImage = () =>
    resolveGuestImage({ ...(cfg.guestImageDir && { imageDir: cfg.guestImageDir }) });
  const accelerator = (requested: 'auto' | 'kvm' | 'tcg') => chooseAccelerator(requested, kvmProbe);
  // Warm pools (docs/warm-pools.md): VMs booted before any sandbox asks, on free capacity only.
  const warmPoolInformer = new Informer<KataWarmPool>(kc, {
    path: `/apis/${CRD_GROUP}/${CRD_VERSION}/${WARM_POOL_PLURAL}`,
    logger: log.child({ informer: 'katawarmpools' }),
  });
  const warmLog = log.child({ subsystem: 'warm-pools' });
  const warmPools = new WarmPools({
    deps: {
      host: nodeSandboxHost({
        config: cfg,
        guestImage,
        accelerator,
        ...(vmCgroups && { vmCgroups }),
        logger: warmLog,
      }),
      config: cfg,
      metrics,
      log: warmLog,
      store: new WarmVmStore(cfg.stateDir),
    },
    nodeName: cfg.nodeName,
    pools: warmPoolInformer,
    clients,
    freeForWarm: () => {
      const a = allocation();
      return { memoryMiB: cfg.memoryMiB - a.memoryMiB, slots: cfg.maxSandboxes - a.sandboxes };
    },
    claimedByPool: () => {
      const m = new Map<string, number>();
      for (const r of live()) {
        const pool = r.state.warm?.pool;
        if (pool) m.set(pool, (m.get(pool) ?? 0) + 1);
      }
      return m;
    },
    // Sandboxes created within the last minute and not yet running hold refills back.
    holdRefills: () =>
      live().some(
        (r) => !r.state.readyAt && Date.now() - Date.parse(r.state.createdAt) < REFILL_HOLD_MS,
      ),
    onReady: (ready) => {
      warmReady = ready;
      heartbeat.setAllocated(allocation());
    },
  });
  const rec = new NodeReconciler({
    clients,
    sandboxes,
    events,
    enqueue: (key) => queue.add(key),
    log,
    runtime: {
      config: cfg,
      store,
      metrics,
      logger: log,
      guestImage,
      accelerator,
      warmPools,
      createSlots: new PQueue({ concurrency: cfg.concurrency }),
      ...(vmCgroups && { vmCgroups }),
      images,
      views,
      pullSecrets: (req) => pullSecrets.read(req),
      network: new SandboxNetwork({
        netnsRoots: cfg.netnsRoots,
        cni: {
          confDir: cfg.cniConfDir,
          binDirs: cfg.cniBinDirs,
          ...(cfg.cniNetwork && { network: cfg.cniNetwork }),
          ...(cfg.cniNodeNetns && { nodeNetns: cfg.cniNodeNetns }),
        },
        log,
        claims: () => storedNetnsClaims(store),
      }),
    },
  });

  sandboxes.start(stop.signal);
  heartbeat.start();
  let ready = false;
  const { server, port, scheme } = await startMetricsServer({
    config: cfg,
    kc,
    log,
    commonName: `kata-node-agent-${cfg.nodeName}`,
    registry: metrics.registry,
    // Not ready while the Lease is not getting through: the controller would soon call this
    // node lost.
    ready: () =>
      ready && sandboxes.hasSynced() && heartbeat.renewedWithin(NODE_LEASE_DURATION_SECONDS * 1000),
  });
  log.info({ port, scheme, node: cfg.nodeName }, 'serving /metrics, /healthz, /readyz');

  await sandboxes.waitForSync(120_000);
  const outcomes = await rec.recover(sandboxes.list(), { store, ...(vmCgroups && { vmCgroups }) });
  log.info({ recovered: Object.fromEntries(outcomes) }, 'recovered state of previous runs');
  const warmOutcomes = await warmPools.recover(
    new Set([...rec.runtimes.values()].flatMap((r) => (r.state.warm ? [r.state.warm.vmUid] : []))),
  );
  log.info({ recovered: warmOutcomes }, 'recovered warm VMs of previous runs');
  warmPoolInformer.start(stop.signal);
  warmPools.start(stop.signal);
  // Views and cache leases of sandboxes that ended or vanished while no agent was running.
  const alive = new Set([...rec.runtimes.values()].filter((r) => !r.ended).map((r) => r.uid));
  const freed = await images.releaseAllExcept(alive);
  if (freed.length > 0) log.info({ sandboxes: freed }, 'released image views and leases');

  const enqueue = (sb: KataSandbox): void => queue.add(objectKey(sb));
  sandboxes.addHandlers({ onAdd: enqueue, onUpdate: (_o, n) => enqueue(n), onDelete: enqueue });
  for (const sb of sandboxes.list()) enqueue(sb);
  queue.start();
  ready = true;

  // A tap or redirect removed from the host cuts a VM off while it looks healthy: look again.
  let checking: Promise<void> | undefined;
  const networkCheck =
    cfg.networkCheckMs > 0
      ? setInterval(() => {
          checking ??= rec.checkNetworks(stop.signal).finally(() => (checking = undefined));
        }, cfg.networkCheckMs)
      : undefined;
  networkCheck?.unref();

  // Guest figures for the per-sandbox metrics: sampled here, read at scrape time.
  let sampling: Promise<void> | undefined;
  const guestStats =
    cfg.guestStatsMs > 0
      ? setInterval(() => {
          sampling ??= rec
            .sampleGuests(Math.min(GUEST_STATS_TIMEOUT_MS, cfg.guestStatsMs), stop.signal)
            .finally(() => (sampling = undefined));
        }, cfg.guestStatsMs)
      : undefined;
  guestStats?.unref();

  // Each VM's console log stays under its cap (console-cap.ts).
  let capping: Promise<void> | undefined;
  const consoleCap = setInterval(() => {
    capping ??= (async () => {
      for (const rt of runtimes()) {
        const file = rt.state.qemu?.info.consoleLog;
        if (!file) continue;
        await capConsoleLog(file, vmFiles(path.dirname(file)).consoleSocket).catch((err: unknown) =>
          rt.log.warn({ err }, 'capping the console log failed'),
        );
      }
    })().finally(() => (capping = undefined));
  }, CONSOLE_CHECK_MS);
  consoleCap.unref();

  // Level-triggered: the Lease's allocation annotations follow the runtimes within a few seconds.
  const allocationSync = setInterval(() => heartbeat.setAllocated(allocation()), 3_000);
  allocationSync.unref();

  let stopping = false;
  async function shutdown(code: number): Promise<void> {
    if (stopping) return;
    stopping = true;
    // VMs keep running: the next node agent adopts them.
    log.info('shutting down: VMs keep running');
    stop.abort();
    clearInterval(networkCheck);
    clearInterval(guestStats);
    clearInterval(allocationSync);
    clearInterval(consoleCap);
    await queue.shutdown(10_000);
    await warmPools.stop();
    await warmPoolInformer.stop();
    await sandboxes.stop();
    await heartbeat.stop();
    await events.flush();
    await stream.server.close();
    server.close();
    process.exit(code);
  }
  processShutdown(shutdown, log);
}

if (isNodeHeartbeatWorker()) {
  runNodeHeartbeatWorker();
} else {
  main().catch((err: unknown) => {
    log.fatal({ err }, 'kata-node-agent failed');
    process.exit(1);
  });
}

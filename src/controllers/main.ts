#!/usr/bin/env node
import type { V1Lease, V1Node, V1Secret } from '@kubernetes/client-node';
import { hostname } from 'node:os';
import {
  CRD_GROUP,
  CRD_VERSION,
  NODE_LABEL,
  PLURAL,
  SYSTEM_NAMESPACE,
  WARM_POOL_PLURAL,
  type KataSandbox,
  type KataWarmPool,
} from '../crds/index.js';
import { warmPoolConditionsReconciler } from './warm-pool-conditions.js';
import { CONTROLLER_REPORTER, EventRecorder } from '../kube/events.js';
import { Informer } from '../kube/informer.js';
import { loadKubeConfig, makeClients } from '../kube/kube-client.js';
import { LeaderElector } from '../kube/leader-election.js';
import { objectKey } from '../kube/object-cache.js';
import { WorkQueue } from '../kube/work-queue.js';
import { startMetricsServer } from '../observability/metrics-server.js';
import { createLogger } from '../observability/logger.js';
import { controllerMetrics } from './controller-metrics.js';
import { CONTROLLER_HELP, controllerConfig } from './controller-config.js';
import { nodeOfLease } from '../kube/lease.js';
import { LeaseObservations } from './lease-observations.js';
import { NodeLoadIndex } from './node-load-index.js';
import { SandboxReconciler } from './sandbox-reconciler.js';
import {
  PROJECTION_LABEL,
  PROJECTION_NAMESPACE,
  projectionView,
} from '../kube/pull-secret-projection.js';
import { orphanedProjections } from './pull-secret-projection.js';
import { PullSecretProjector } from './pull-secret-projector.js';
import { projectionViews } from './pull-secret-world.js';
import { processShutdown } from '../common/process-shutdown.js';

const log = createLogger('kata-controller');
/** How often projections without a sandbox are looked for (besides on taking the lead). */
const PROJECTION_GC_MS = 120_000;

async function main(): Promise<void> {
  const cfg = controllerConfig(process.argv.slice(2), process.env, hostname());
  if (cfg.help) {
    process.stdout.write(CONTROLLER_HELP);
    return;
  }
  const kc = loadKubeConfig({ path: cfg.kubeconfig });
  const clients = makeClients(kc);
  const metrics = controllerMetrics();
  const stop = new AbortController();

  const sandboxes = new Informer<KataSandbox>(kc, {
    path: cfg.watchNamespace
      ? `/apis/${CRD_GROUP}/${CRD_VERSION}/namespaces/${cfg.watchNamespace}/${PLURAL}`
      : `/apis/${CRD_GROUP}/${CRD_VERSION}/${PLURAL}`,
    logger: log.child({ informer: 'katasandboxes' }),
  });
  const leases = new Informer<V1Lease>(kc, {
    path: `/apis/coordination.k8s.io/v1/namespaces/${SYSTEM_NAMESPACE}/leases`,
    logger: log.child({ informer: 'leases' }),
  });
  const nodes = new Informer<V1Node>(kc, {
    path: '/api/v1/nodes',
    logger: log.child({ informer: 'nodes' }),
  });
  const warmPools = new Informer<KataWarmPool>(kc, {
    path: `/apis/${CRD_GROUP}/${CRD_VERSION}/${WARM_POOL_PLURAL}`,
    logger: log.child({ informer: 'katawarmpools' }),
  });
  // The pull-secret projections it wrote (only those: by label), in its own namespace.
  const projections = new Informer<V1Secret>(kc, {
    path: `/api/v1/namespaces/${PROJECTION_NAMESPACE}/secrets`,
    labelSelector: `${PROJECTION_LABEL}=true`,
    logger: log.child({ informer: 'pull-secret-projections' }),
  });
  const projector = new PullSecretProjector({ clients, log });

  const events = new EventRecorder({
    clients,
    reportingController: CONTROLLER_REPORTER,
    reportingInstance: cfg.identity,
    logger: log,
  });
  const leaseObservations = new LeaseObservations(cfg.maxNodeLeaseSeconds);
  const loads = new NodeLoadIndex();
  const reconciler = new SandboxReconciler({
    clients,
    sandboxes,
    loads,
    leases,
    leaseObservations,
    nodes,
    events,
    metrics,
    log,
    pullSecrets: { projections, projector },
  });
  let queue: WorkQueue | undefined;
  let poolQueue: WorkQueue | undefined;

  const enqueue = (sb: KataSandbox): void => queue?.add(objectKey(sb));
  // A Lease or Node change can make pending sandboxes schedulable or a node's sandboxes lost.
  const enqueueForNode = (node: string | undefined): void => {
    for (const sb of sandboxes.list()) {
      const on = sb.metadata.labels?.[NODE_LABEL];
      if (!on || on === node) enqueue(sb);
    }
  };
  // The load index first, so the reconcile this enqueues already sees the change.
  sandboxes.addHandlers({
    onAdd: (sb) => {
      loads.set(objectKey(sb), sb);
      enqueue(sb);
    },
    onUpdate: (_o, sb) => {
      loads.set(objectKey(sb), sb);
      enqueue(sb);
    },
    onDelete: (sb) => {
      loads.set(objectKey(sb), undefined);
      enqueue(sb);
    },
  });
  // Each Lease is recorded as seen before anything is enqueued for it: the reconcile judges it
  // by when it was seen to change (lease-observations.ts).
  leases.addHandlers({
    onAdd: (l) => {
      leaseObservations.observe(l, Date.now());
      enqueueForNode(nodeOfLease(l));
    },
    onUpdate: (o, n) => {
      // A plain renewal changes nothing; a change of holder, capacity or freshness (a Lease written
      // back into the past, or renewed after expiring) can change where sandboxes go or their fate.
      const now = Date.now();
      const wasFresh = leaseObservations.isFresh(o, now);
      leaseObservations.observe(n, now);
      if (
        o.spec?.holderIdentity !== n.spec?.holderIdentity ||
        JSON.stringify(o.metadata?.annotations) !== JSON.stringify(n.metadata?.annotations) ||
        wasFresh !== leaseObservations.isFresh(n, now)
      ) {
        enqueueForNode(nodeOfLease(n));
      }
    },
    onDelete: (l) => {
      leaseObservations.forget(l);
      enqueueForNode(nodeOfLease(l));
    },
  });
  nodes.addHandlers({
    onAdd: (n) => enqueueForNode(n.metadata?.name),
    onUpdate: (_o, n) => enqueueForNode(n.metadata?.name),
    onDelete: (n) => enqueueForNode(n.metadata?.name),
  });
  // A projection changed or deleted by someone else is put back by its sandbox's reconcile.
  const enqueueOwner = (s: V1Secret): void => {
    const p = projectionView(s);
    const sb = p && sandboxes.get(p.namespace, p.name);
    if (sb) enqueue(sb);
  };
  projections.addHandlers({
    onUpdate: (_o, n) => enqueueOwner(n),
    onDelete: enqueueOwner,
  });
  for (const inf of [sandboxes, leases, nodes, projections, warmPools]) inf.start(stop.signal);

  // Projections whose sandbox vanished while no controller led (or a delete was missed).
  const collectProjections = async (): Promise<void> => {
    const candidates = orphanedProjections(
      projectionViews(projections.list()),
      sandboxes.list(),
      cfg.watchNamespace,
    );
    if (candidates.length === 0) return;
    const gone = await projector.collect(candidates, stop.signal);
    if (gone.length > 0)
      log.info({ sandboxes: gone }, 'collected orphaned pull-secret projections');
  };
  let collector: NodeJS.Timeout | undefined;

  const phaseGauge = setInterval(() => {
    const counts = new Map<string, number>();
    for (const sb of sandboxes.list())
      counts.set(
        sb.status?.phase ?? 'Pending',
        (counts.get(sb.status?.phase ?? 'Pending') ?? 0) + 1,
      );
    metrics.sandboxes.reset();
    for (const [phase, n] of counts) metrics.sandboxes.set({ phase }, n);
    metrics.queueDepth.set(queue?.depth ?? 0);
  }, 5_000);
  phaseGauge.unref();

  const synced = (): boolean =>
    sandboxes.hasSynced() && leases.hasSynced() && nodes.hasSynced() && projections.hasSynced();
  const { server, port, scheme } = await startMetricsServer({
    config: cfg,
    kc,
    registry: metrics.registry,
    ready: synced,
    log,
    commonName: 'kata-controller',
    dnsNames: ['kata-controller-metrics.kata-system.svc'],
  });
  log.info({ port, scheme }, 'serving /metrics, /healthz, /readyz');

  const lead = async (): Promise<void> => {
    await Promise.all([
      sandboxes.waitForSync(),
      leases.waitForSync(),
      nodes.waitForSync(),
      projections.waitForSync(),
      warmPools.waitForSync(),
    ]);
    metrics.leader.set(1);
    queue = new WorkQueue({
      reconcile: reconciler.reconcile,
      concurrency: cfg.concurrency,
      logger: log,
      hooks: {
        onDepth: (d) => metrics.queueDepth.set(d),
        onResult: (_k, outcome, ms) => {
          metrics.reconciles.inc({ result: outcome });
          metrics.reconcileSeconds.observe(ms / 1000);
        },
      },
    });
    for (const sb of sandboxes.list()) enqueue(sb);
    log.info({ sandboxes: sandboxes.list().length }, 'leading: reconciling');
    const collect = (): void => {
      collectProjections().catch((err: unknown) =>
        log.warn({ err }, 'collecting pull-secret projections failed'),
      );
    };
    collect();
    collector = setInterval(collect, PROJECTION_GC_MS);
    collector.unref();
    // Warm pools: their Ready condition follows the entries node agents write.
    poolQueue = new WorkQueue({
      reconcile: warmPoolConditionsReconciler(warmPools, clients),
      concurrency: 1,
      logger: log,
    });
    const enqueuePool = (p: KataWarmPool): void => poolQueue?.add(p.metadata.name ?? '');
    warmPools.addHandlers({ onAdd: enqueuePool, onUpdate: (_o, n) => enqueuePool(n) });
    for (const p of warmPools.list()) enqueuePool(p);
  };

  const elector = cfg.leaderElect
    ? new LeaderElector({
        clients,
        identity: cfg.identity,
        leaseName: cfg.leaderElectionId,
        logger: log,
        onStartedLeading: () => {
          lead().catch((err: unknown) => log.error({ err }, 'failed to start leading'));
        },
        // Like controller-runtime: a replica that lost the lease exits and is restarted clean.
        onStoppedLeading: () => {
          metrics.leader.set(0);
          log.warn('lost the leader lease; exiting');
          ending.exit(1);
        },
      })
    : undefined;
  if (elector) elector.start();
  else await lead();

  let stopping = false;
  async function shutdown(code: number): Promise<void> {
    if (stopping) return;
    stopping = true;
    log.info('shutting down: draining the work queue');
    clearInterval(collector);
    await queue?.shutdown(20_000);
    await poolQueue?.shutdown(5_000);
    await elector?.stop();
    stop.abort();
    await Promise.all([sandboxes.stop(), leases.stop(), nodes.stop(), projections.stop()]);
    await events.flush();
    server.close();
    process.exit(code);
  }
  const ending = processShutdown(shutdown, log);
}

main().catch((err: unknown) => {
  log.fatal({ err }, 'kata-controller failed');
  process.exit(1);
});

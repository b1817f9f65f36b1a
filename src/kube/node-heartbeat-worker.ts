// The worker side of NodeHeartbeatThread: its own kubeconfig load (so a rotated token file is
// re-read by this client as by the main thread's), its own CoordinationV1Api, a NodeHeartbeat on
// this thread's event loop, status posted back. Runs only inside the worker_thread.
import { CoordinationV1Api } from '@kubernetes/client-node';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../observability/logger.js';
import { loadKubeConfigStrict } from './kube-client.js';
import type { NodeAllocation, NodeCapacity } from './lease.js';
import { NodeHeartbeat } from './node-heartbeat.js';
import {
  type FromHeartbeatWorker,
  NODE_HEARTBEAT_ROLE,
  type NodeHeartbeatWorkerData,
  type ToHeartbeatWorker,
} from './node-heartbeat-thread.js';

/** True inside the heartbeat worker: the entry file runs runNodeHeartbeatWorker() instead of main. */
export function isNodeHeartbeatWorker(): boolean {
  return !isMainThread && (workerData as { role?: unknown } | null)?.role === NODE_HEARTBEAT_ROLE;
}

export function runNodeHeartbeatWorker(): void {
  const port = parentPort;
  if (!port || !isNodeHeartbeatWorker()) throw new Error('not the node heartbeat worker');
  const data = workerData as NodeHeartbeatWorkerData;
  const post = (m: FromHeartbeatWorker): void => port.postMessage(m);
  // The same rule as the main thread's: in-cluster or the explicit --kubeconfig, never a fallback.
  const kc = loadKubeConfigStrict(data.kubeconfig);
  let capacity: NodeCapacity = data.capacity;
  let allocated: NodeAllocation | undefined = data.allocated;
  const log = createLogger('node-heartbeat');
  const heartbeat = new NodeHeartbeat({
    clients: { coordination: kc.makeApiClient(CoordinationV1Api) },
    nodeName: data.nodeName,
    capacity: () => capacity,
    allocated: () => allocated,
    ...(data.annotations !== undefined && { annotations: data.annotations }),
    ...(data.identity !== undefined && { identity: data.identity }),
    ...(data.namespace !== undefined && { namespace: data.namespace }),
    ...(data.leaseDurationSeconds !== undefined && {
      leaseDurationSeconds: data.leaseDurationSeconds,
    }),
    ...(data.renewIntervalMs !== undefined && { renewIntervalMs: data.renewIntervalMs }),
    ...(data.timeoutMs !== undefined && { timeoutMs: data.timeoutMs }),
    logger: log,
    onRenewed: (at) => post({ type: 'renewed', at }),
    onFailed: (err) => post({ type: 'failed', message: (err as Error).message ?? String(err) }),
  });
  port.on('message', (m: ToHeartbeatWorker) => {
    if (m.type === 'capacity') capacity = m.capacity;
    else if (m.type === 'allocated') allocated = m.allocated;
    else if (m.type === 'stop') {
      const end = (): void => {
        post({ type: 'stopped' });
        // Keep-alive sockets of the client would hold the thread open.
        process.exit(0);
      };
      heartbeat.stop().then(end, (err: unknown) => {
        log.error({ err }, 'stopping the heartbeat failed');
        end();
      });
    }
  });
  heartbeat.start();
}

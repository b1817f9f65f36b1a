// The node agent's heartbeat keeps renewing its Lease while the agent's main thread is stalled
// (issue 14 row 4: a CPU-bound pull step froze the agent, its Lease expired and another tenant's
// sandbox was declared NodeLost). The heartbeat runs as main.ts wires it: the bundled node agent
// entry, started as a worker thread, with its own client to the real API server. The stall is a
// synchronous busy loop on this thread, longer than the lease duration; a kubectl watch (another
// process) records every renewTime the API server saw meanwhile.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { leaseCapacity, leaseIsFresh, nodeLeaseName, timeMillis } from '../../src/kube/lease.js';
import { makeClients, type KubeClients } from '../../src/kube/kube-client.js';
import { NodeHeartbeatThread } from '../../src/kube/node-heartbeat-thread.js';
import { adminKubeConfig, adminKubeConfigPath, freshNamespace } from './cluster.js';
import { bundleEntry, eventually } from './controller-harness.js';

const LEASE_SECONDS = 4;

let clients: KubeClients;
let ns: string;
let kubeconfig: string;
let script: URL;

beforeAll(async () => {
  kubeconfig = await adminKubeConfigPath();
  clients = makeClients(await adminKubeConfig());
  ns = await freshNamespace('hb-thread');
  script = pathToFileURL(await bundleEntry('src/node-agent/main.ts', 'kata-node-agent'));
});

/** Every renewTime of the Lease the API server reports, collected by `kubectl get --watch`. */
function watchRenewTimes(name: string) {
  const child = spawn(
    'kubectl',
    [
      ...['--kubeconfig', kubeconfig, '-n', ns, 'get', 'lease', name, '--watch'],
      ...['-o', 'jsonpath={.spec.renewTime}{"\\n"}'],
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const times: number[] = [];
  let buf = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) {
      const t = timeMillis(l.trim());
      if (t !== undefined) times.push(t);
    }
  });
  return { times, stop: () => child.kill('SIGTERM') };
}

function busyWait(ms: number): void {
  const end = Date.now() + ms;
  // Deliberately blocks this thread's event loop, as a CPU-bound step of a sandbox would.
  while (Date.now() < end) {
    /* spin */
  }
}

describe('NodeHeartbeatThread (the node agent bundle as a worker thread)', () => {
  let hb: NodeHeartbeatThread | undefined;

  afterAll(async () => {
    await hb?.stop();
  });

  it('renews the Lease while the main thread is blocked for longer than the lease lasts', async () => {
    const thread = new NodeHeartbeatThread({
      script,
      kubeconfig,
      nodeName: 'stalled',
      namespace: ns,
      capacity: { sandboxes: 3, memoryMiB: 1024 },
      leaseDurationSeconds: LEASE_SECONDS,
      renewIntervalMs: 400,
    });
    hb = thread;
    thread.start();
    const name = nodeLeaseName('stalled');
    const read = () => clients.coordination.readNamespacedLease({ namespace: ns, name });
    await eventually('first renewal', async () => (thread.lastRenewed > 0 ? true : undefined));

    // Capacity changes reach the worker by message and the Lease by its next renewal.
    thread.setCapacity({ sandboxes: 7, memoryMiB: 2048 });
    await eventually('capacity advertised', async () =>
      leaseCapacity(await read())?.sandboxes === 7 ? true : undefined,
    );
    expect(leaseCapacity(await read())).toEqual({ sandboxes: 7, memoryMiB: 2048 });

    const watch = watchRenewTimes(name);
    try {
      await eventually('the watch saw the Lease', async () =>
        watch.times.length > 0 ? true : undefined,
      );
      const stallStart = Date.now();
      busyWait(3 * LEASE_SECONDS * 1000);
      const stallEnd = Date.now();
      // The watch's output waited in its pipe; let this thread read it.
      await new Promise((r) => setTimeout(r, 1_000));
      const during = watch.times.filter((t) => t > stallStart && t < stallEnd);
      // Renewed again and again while this thread could not run a single callback...
      expect(during.length).toBeGreaterThanOrEqual(2);
      // ...so at the end of the stall the controller's rule still finds the Lease fresh, from a
      // renewal made during the stall.
      const last = Math.max(...during);
      expect(
        leaseIsFresh(
          { spec: { renewTime: new Date(last), leaseDurationSeconds: LEASE_SECONDS } },
          stallEnd,
        ),
      ).toBe(true);
      expect(thread.lastRenewed).toBeGreaterThan(stallStart);
      expect(thread.starts).toBe(1);
    } finally {
      watch.stop();
    }

    // A worker that dies is started again, and the Lease goes on being renewed by the new one.
    expect(thread.renewedWithin(LEASE_SECONDS * 1000)).toBe(true);
    await thread.kill();
    const killedAt = Date.now();
    await eventually('the worker started again', async () =>
      thread.starts === 2 ? true : undefined,
    );
    await eventually('renewed by the new worker', async () =>
      thread.lastRenewed > killedAt ? true : undefined,
    );
    const renewed = timeMillis((await read()).spec?.renewTime as unknown as string) ?? 0;
    expect(renewed).toBeGreaterThan(killedAt - 1000);
    expect(thread.lastError).toBeUndefined();

    // Stopped: the worker exits and the Lease is no longer renewed.
    await thread.stop();
    const after = timeMillis((await read()).spec?.renewTime as unknown as string);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(timeMillis((await read()).spec?.renewTime as unknown as string)).toBe(after);
  });
});

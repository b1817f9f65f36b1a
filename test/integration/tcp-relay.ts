// A loopback TCP proxy in front of the API server: tests cut or freeze clients' connections
// through it, or count them, without touching the server.
import type { KubeConfig } from '@kubernetes/client-node';
import net from 'node:net';
import { newKubeConfig } from '../../src/kube/shared-agent.js';

/** A TCP relay to the API server whose connections the test can cut or freeze. */
export class Relay {
  private server: net.Server;
  private pairs = new Set<{ a: net.Socket; b: net.Socket }>();
  port = 0;
  /** TCP connections accepted since start. */
  accepted = 0;

  constructor(
    private host: string,
    private upstreamPort: number,
  ) {
    this.server = net.createServer((a) => {
      this.accepted += 1;
      const b = net.connect(this.upstreamPort, this.host);
      const pair = { a, b };
      this.pairs.add(pair);
      a.pipe(b);
      b.pipe(a);
      const end = () => {
        a.destroy();
        b.destroy();
        this.pairs.delete(pair);
      };
      a.on('error', end).on('close', end);
      b.on('error', end).on('close', end);
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  get connections(): number {
    return this.pairs.size;
  }

  /** Reset every open connection (a network failure). */
  cut(): void {
    for (const { a, b } of this.pairs) {
      a.resetAndDestroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  /** Stop relaying on the open connections but keep them open (a half-open peer). */
  freeze(): void {
    for (const { a, b } of this.pairs) {
      a.unpipe(b);
      b.unpipe(a);
      a.pause();
      b.pause();
    }
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

/**
 * A copy of `kc` that reaches the API server through `relay`: same credentials and CA; the relay
 * is on loopback as the server is, so its certificate still fits under the server's own name.
 */
export function throughRelay(kc: KubeConfig, relay: Relay): KubeConfig {
  const server = new URL(kc.getCurrentCluster()?.server ?? '');
  const relayed = newKubeConfig();
  relayed.loadFromString(kc.exportConfig());
  const cluster = relayed.getCurrentCluster();
  if (!cluster) throw new Error('no cluster');
  relayed.clusters = relayed.clusters.map((c) =>
    c.name === cluster.name
      ? { ...c, server: `https://127.0.0.1:${relay.port}`, tlsServerName: server.hostname }
      : c,
  );
  return relayed;
}

// The soak's image source: a real docker-registry on loopback holding one busybox image, reached
// through a gate of the soak's own (a TCP relay on loopback) that slows every answer to a
// trickle, so a pull lasts seconds, and that the `registry-stop` fault shuts: every open
// connection cut (mid-blob when a pull is under way) and every new one reset, until it opens again.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  buildBusyboxImage,
  pushImage,
  startRegistry,
  type TestRegistry,
} from '../integration/images-registry.js';

/** Bytes per second the gate lets through from the registry: a busybox layer takes ~4 s. */
const RATE = 256 * 1024;

export class RegistryGate {
  private readonly open = new Set<net.Socket>();
  private stopped = false;
  private refused = 0;

  private constructor(
    private readonly server: net.Server,
    readonly host: string,
  ) {}

  static async start(target: string): Promise<RegistryGate> {
    const [targetHost, targetPort] = target.split(':');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const gate = new RegistryGate(
      server,
      `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    );
    server.on('connection', (client) => gate.relay(client, targetHost!, Number(targetPort)));
    return gate;
  }

  private relay(client: net.Socket, host: string, port: number): void {
    if (this.stopped) {
      this.refused += 1;
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(port, host);
    for (const s of [client, upstream]) {
      this.open.add(s);
      s.on('error', () => {});
      s.once('close', () => {
        this.open.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    // Registry → client at RATE: each chunk, then a pause as long as it takes at that rate.
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk);
      upstream.pause();
      setTimeout(() => upstream.resume(), Math.ceil((chunk.length / RATE) * 1000));
    });
  }

  /** The registry stops: open connections are cut, new ones reset. */
  stop(): number {
    this.stopped = true;
    this.refused = 0;
    const cut = this.open.size;
    for (const s of [...this.open]) s.resetAndDestroy();
    return cut;
  }

  /** Opens again; returns how many connections were reset while it was stopped. */
  resume(): number {
    this.stopped = false;
    return this.refused;
  }

  close(): Promise<void> {
    this.stop();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export class SoakRegistry {
  private constructor(
    private readonly registry: TestRegistry,
    readonly gate: RegistryGate,
    private readonly work: string,
  ) {}

  /** The registry, its gate and the busybox image pushed as soak/busybox:1. */
  static async start(base: string): Promise<SoakRegistry> {
    const registry = await startRegistry();
    const work = mkdtempSync(path.join(base, 'image-'));
    try {
      const layout = await buildBusyboxImage(work, { cmd: ['/bin/sh'] });
      await pushImage(layout, registry, 'soak/busybox:1');
      return new SoakRegistry(registry, await RegistryGate.start(registry.host), work);
    } catch (err) {
      await registry.stop();
      throw err;
    }
  }

  /** The image reference sandboxes use (through the gate). */
  get image(): string {
    return `${this.gate.host}/soak/busybox:1`;
  }

  /**
   * The node agent's flags: the gate is plain HTTP; a cache of one byte evicts every image no
   * sandbox holds, so each image sandbox pulls again (through the gate, mid-pull for the fault);
   * a short first back-off, so a pull the fault broke is tried again within the round.
   */
  agentArgs(): string[] {
    return [
      ...['--insecure-registries', this.gate.host],
      ...['--image-cache-max-bytes', '1'],
      ...['--image-pull-backoff-ms', '2000'],
      ...['--image-pull-timeout-ms', '120000'],
    ];
  }

  async stop(): Promise<void> {
    await this.gate.close();
    await this.registry.stop();
    rmSync(this.work, { recursive: true, force: true });
  }
}

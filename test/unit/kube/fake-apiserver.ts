// A scripted stand-in for the list and watch endpoints of one collection, for unit tests of the
// informer's restart logic (the real API server is exercised by test/integration/kube-*.test.ts).
import { KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { newKubeConfig } from '../../../src/kube/shared-agent.js';

export interface SeenRequest {
  watch: boolean;
  query: URLSearchParams;
}

export class FakeCollection {
  private server = http.createServer((req, res) => this.handle(req, res));
  private rv = 100;
  readonly objects = new Map<string, KubernetesObject>();
  readonly watches = new Set<http.ServerResponse>();
  readonly requests: SeenRequest[] = [];
  /** Every event sent, replayed to a watch that starts from an older resourceVersion. */
  private readonly history: Array<{ rv: number; ev: unknown }> = [];
  /** Set to make the next list requests fail with this HTTP status. */
  failLists = 0;
  /** Set to answer the next watch with an ERROR 410 event. */
  goneOnNextWatch = false;

  async start(): Promise<KubeConfig> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const port = (this.server.address() as AddressInfo).port;
    const kc = newKubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'u' }],
      currentContext: 'fake',
    });
    return kc;
  }

  async close(): Promise<void> {
    for (const w of this.watches) w.destroy();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private nextRv(): string {
    return String(++this.rv);
  }

  /** Store a change and send it to every open watch. */
  put(name: string, data: Record<string, string> = {}): KubernetesObject {
    const type = this.objects.has(name) ? 'MODIFIED' : 'ADDED';
    const obj = {
      metadata: { name, namespace: 'ns', resourceVersion: this.nextRv() },
      data,
    } as KubernetesObject;
    this.objects.set(name, obj);
    this.send({ type, object: obj });
    return obj;
  }

  remove(name: string, silently = false): void {
    const obj = this.objects.get(name);
    if (!obj) return;
    this.objects.delete(name);
    const gone = { ...obj, metadata: { ...obj.metadata, resourceVersion: this.nextRv() } };
    if (!silently) this.send({ type: 'DELETED', object: gone });
  }

  bookmark(): string {
    const rv = this.nextRv();
    this.send({
      type: 'BOOKMARK',
      object: { kind: 'ConfigMap', metadata: { resourceVersion: rv } },
    });
    return rv;
  }

  /** Cut every open watch connection without a clean end (a network failure). */
  cutWatches(): void {
    for (const w of this.watches) w.socket?.destroy();
    this.watches.clear();
  }

  send(ev: { type: string; object: KubernetesObject }): void {
    this.history.push({ rv: Number(ev.object.metadata?.resourceVersion), ev });
    for (const w of this.watches) w.write(JSON.stringify(ev) + '\n');
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const watch = url.searchParams.get('watch') === 'true';
    this.requests.push({ watch, query: url.searchParams });
    if (!watch) {
      if (this.failLists > 0) {
        this.failLists--;
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', code: 500, message: 'etcd unavailable' }));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: 'ConfigMapList',
          apiVersion: 'v1',
          metadata: { resourceVersion: String(this.rv) },
          items: [...this.objects.values()],
        }),
      );
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    if (this.goneOnNextWatch) {
      this.goneOnNextWatch = false;
      res.end(
        JSON.stringify({
          type: 'ERROR',
          object: {
            kind: 'Status',
            code: 410,
            reason: 'Expired',
            message: 'too old resource version',
          },
        }) + '\n',
      );
      return;
    }
    const from = Number(url.searchParams.get('resourceVersion') ?? 0);
    for (const h of this.history) if (h.rv > from) res.write(JSON.stringify(h.ev) + '\n');
    this.watches.add(res);
    res.on('close', () => this.watches.delete(res));
  }
}

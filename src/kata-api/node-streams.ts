// kata-api's side of the node agents' stream endpoints: which node runs a sandbox, where its
// node agent's endpoint is and which certificate it serves (both from the node's Lease, which
// only that node agent may write), and a request to it with kata-api's bound token.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { KubeClients } from '../kube/kube-client.js';
import { callApi, isNotFound } from '../kube/kube-client.js';
import { KATA_SYSTEM_NAMESPACE, leaseIsFresh, nodeLeaseName } from '../kube/lease.js';
import { CRD_GROUP, CRD_VERSION, NODE_LABEL, PLURAL, type KataSandbox } from '../crds/index.js';
import { STREAM_CA_ANNOTATION, STREAM_ENDPOINT_ANNOTATION } from '../subresources/contract.js';

/** A refusal with the HTTP code to answer with. */
export class StreamError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export interface NodeEndpoint {
  url: string;
  caPem: string;
}

export interface NodeStreamsOptions {
  clients: KubeClients;
  /** A bound token for the stream audience (a projected ServiceAccount token, rotated by kubelet). */
  tokenFile: string;
  /** Deadline of each API call and of connecting to a node agent. */
  timeoutMs?: number;
}

export class NodeStreams {
  constructor(private readonly opts: NodeStreamsOptions) {}

  async sandbox(namespace: string, name: string): Promise<KataSandbox> {
    try {
      return (await callApi(
        'get KataSandbox',
        () =>
          this.opts.clients.custom.getNamespacedCustomObject({
            group: CRD_GROUP,
            version: CRD_VERSION,
            plural: PLURAL,
            namespace,
            name,
          }),
        { timeoutMs: this.opts.timeoutMs ?? 10_000 },
      )) as KataSandbox;
    } catch (err) {
      if (isNotFound(err)) throw new StreamError(404, `katasandboxes "${name}" not found`);
      throw err;
    }
  }

  /** The node whose agent runs the sandbox. */
  static nodeOf(sb: KataSandbox): string | undefined {
    return sb.status?.nodeName || sb.metadata?.labels?.[NODE_LABEL] || undefined;
  }

  async endpoint(node: string): Promise<NodeEndpoint> {
    let lease;
    try {
      lease = await callApi(
        'get node Lease',
        () =>
          this.opts.clients.coordination.readNamespacedLease({
            namespace: KATA_SYSTEM_NAMESPACE,
            name: nodeLeaseName(node),
          }),
        { timeoutMs: this.opts.timeoutMs ?? 10_000 },
      );
    } catch (err) {
      if (isNotFound(err)) throw new StreamError(503, `node ${node} has no node agent`);
      throw err;
    }
    if (!leaseIsFresh(lease, Date.now())) {
      throw new StreamError(503, `the node agent of node ${node} is not renewing its Lease`);
    }
    const a = lease.metadata?.annotations ?? {};
    const url = a[STREAM_ENDPOINT_ANNOTATION];
    const ca = a[STREAM_CA_ANNOTATION];
    if (!url || !ca) {
      throw new StreamError(503, `the node agent of node ${node} publishes no stream endpoint`);
    }
    return { url, caPem: Buffer.from(ca, 'base64').toString('utf8') };
  }

  /** kata-api's bound token for node agents, re-read each time (kubelet rotates it). */
  async token(): Promise<string> {
    return (await readFile(this.opts.tokenFile, 'utf8')).trim();
  }

  /** GET `path?query` on the node agent; the response is the caller's to consume or destroy. */
  async get(ep: NodeEndpoint, pathAndQuery: string, signal: AbortSignal): Promise<IncomingMessage> {
    const token = await this.token();
    const url = new URL(pathAndQuery, ep.url);
    return new Promise((resolve, reject) => {
      const req = request(url, {
        method: 'GET',
        ca: ep.caPem,
        headers: { Authorization: `Bearer ${token}` },
        signal,
        timeout: this.opts.timeoutMs ?? 10_000,
      });
      req.once('timeout', () => req.destroy(new StreamError(504, 'the node agent did not answer')));
      req.once('response', (res) => {
        req.setTimeout(0); // a followed log may be quiet for long
        resolve(res);
      });
      req.once('error', reject);
      req.end();
    });
  }
}

// The aggregated API subresources.kata.sandbox.io and the node agent's stream endpoint behind it:
// names both kata-api and the node agent use (docs/subresources.md).
export const SUBRESOURCE_GROUP = 'subresources.kata.sandbox.io';
export const SUBRESOURCE_VERSION = 'v1alpha1';
export const SUBRESOURCE_PREFIX = `/apis/${SUBRESOURCE_GROUP}/${SUBRESOURCE_VERSION}`;

export const SUBRESOURCES = ['log', 'exec', 'attach', 'console'] as const;
export type Subresource = (typeof SUBRESOURCES)[number];

/** The verb each subresource is authorized with (as Pods: log is read, the others create a stream). */
export const SUBRESOURCE_VERB: Readonly<Record<Subresource, 'get' | 'create'>> = {
  log: 'get',
  exec: 'create',
  attach: 'create',
  console: 'create',
};

/** Lease annotations by which a node agent publishes its stream endpoint. */
export const STREAM_ENDPOINT_ANNOTATION = 'kata.sandbox.io/stream-endpoint';
/** Base64 of the PEM certificate the endpoint serves (self-signed at start): kata-api's trust anchor. */
export const STREAM_CA_ANNOTATION = 'kata.sandbox.io/stream-ca';

/** The audience of the bound tokens kata-api presents to node agents, and nothing else accepts. */
export const STREAM_TOKEN_AUDIENCE = 'kata-node-agent-stream';
/** The one identity a node agent's stream endpoint serves. */
export const KATA_API_USERNAME = 'system:serviceaccount:kata-system:kata-api';
export const KATA_API_SERVICE_ACCOUNT = 'kata-api';

/** The node agent's path of one sandbox's subresource. */
export function nodeStreamPath(namespace: string, name: string, sub: Subresource): string {
  return `/v1/namespaces/${encodeURIComponent(namespace)}/katasandboxes/${encodeURIComponent(name)}/${sub}`;
}

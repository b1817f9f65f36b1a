// Server-side apply of a KataSandbox's status subresource: each writer (DESIGN §3's ownership
// table) sends only its own fields under its own field manager, so neither erases the other's.
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  CONTROLLER_FIELD_MANAGER,
  CRD_GROUP,
  CRD_VERSION,
  KIND,
  NODE_AGENT_FIELD_MANAGER,
  PLURAL,
} from '../crds/constants.js';
import { callApi, type CallOptions, type KubeClients } from './kube-client.js';

export type FieldManager = typeof CONTROLLER_FIELD_MANAGER | typeof NODE_AGENT_FIELD_MANAGER;

export interface CustomResource {
  group: string;
  version: string;
  plural: string;
  kind: string;
}

export const KATA_SANDBOX_RESOURCE: CustomResource = {
  group: CRD_GROUP,
  version: CRD_VERSION,
  plural: PLURAL,
  kind: KIND,
};

export interface ApplyStatusBody<S> {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string };
  status: S;
}

/**
 * The apply configuration: identity plus the status subset. No resourceVersion and no spec, so it
 * claims nothing else (an apply body's fields are what the manager owns afterwards).
 */
export function buildStatusApply<S>(
  ref: { namespace: string; name: string },
  status: S,
  resource: CustomResource = KATA_SANDBOX_RESOURCE,
): ApplyStatusBody<S> {
  return {
    apiVersion: `${resource.group}/${resource.version}`,
    kind: resource.kind,
    metadata: { name: ref.name, namespace: ref.namespace },
    status,
  };
}

/** Apply `status` as `manager`, forcing ownership of exactly these fields; returns the updated object. */
export async function applyStatus<S, R = unknown>(
  clients: Pick<KubeClients, 'custom'>,
  manager: FieldManager | string,
  ref: { namespace: string; name: string },
  status: S,
  opts: CallOptions & { resource?: CustomResource } = {},
): Promise<R> {
  const resource = opts.resource ?? KATA_SANDBOX_RESOURCE;
  const body = buildStatusApply(ref, status, resource);
  return callApi(
    `apply status of ${ref.namespace}/${ref.name} as ${manager}`,
    () =>
      clients.custom.patchNamespacedCustomObjectStatus(
        {
          group: resource.group,
          version: resource.version,
          plural: resource.plural,
          namespace: ref.namespace,
          name: ref.name,
          body,
          fieldManager: manager,
          force: true,
        },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      ) as Promise<R>,
    opts,
  );
}

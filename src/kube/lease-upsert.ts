// Read a Lease, decide what to write from what is there, and write it: create when absent,
// replace (with the read resourceVersion) when present. The one read-decide-write of the node
// heartbeat and the leader election.
import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node';
import {
  callApi,
  isAlreadyExists,
  isConflict,
  isNotFound,
  type CallOptions,
} from './kube-client.js';

export interface LeaseRef {
  namespace: string;
  name: string;
}

/**
 * Writes what `decide` makes of the current Lease (undefined when absent). `decide` returning
 * undefined writes nothing and resolves undefined. Someone writing in between rejects with the
 * API's 409 (isLostLeaseRace).
 */
export async function upsertLease(
  api: CoordinationV1Api,
  ref: LeaseRef,
  decide: (prev: V1Lease | undefined) => V1Lease | undefined,
  call: CallOptions,
): Promise<V1Lease | undefined> {
  const { namespace, name } = ref;
  let prev: V1Lease | undefined;
  try {
    prev = await callApi(
      `get lease ${name}`,
      () => api.readNamespacedLease({ namespace, name }),
      call,
    );
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const body = decide(prev);
  if (!body) return undefined;
  return prev
    ? callApi(
        `renew lease ${name}`,
        () => api.replaceNamespacedLease({ namespace, name, body }),
        call,
      )
    : callApi(`create lease ${name}`, () => api.createNamespacedLease({ namespace, body }), call);
}

/** Another writer got there between our read and write (replace: 409 Conflict; create: 409 AlreadyExists). */
export function isLostLeaseRace(err: unknown): boolean {
  return isConflict(err) || isAlreadyExists(err);
}

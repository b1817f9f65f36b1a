// Lease rules shared by the node heartbeat, the controller's scheduler and leader election — pure:
// time is passed in, nothing here talks to the API server.
import { V1MicroTime, type V1Lease } from '@kubernetes/client-node';

import {
  ALLOCATED_MEMORY_MIB_ANNOTATION,
  ALLOCATED_SANDBOXES_ANNOTATION,
  ALLOCATED_VCPUS_ANNOTATION,
  WARM_READY_ANNOTATION,
  CAPACITY_MEMORY_MIB_ANNOTATION,
  CAPACITY_SANDBOXES_ANNOTATION,
  nodeLeaseName,
  SYSTEM_NAMESPACE,
} from '../crds/constants.js';

export { CAPACITY_MEMORY_MIB_ANNOTATION, CAPACITY_SANDBOXES_ANNOTATION, nodeLeaseName };
export const KATA_SYSTEM_NAMESPACE = SYSTEM_NAMESPACE;
export const CONTROLLER_LEASE_NAME = 'kata-controller';
export const NODE_LEASE_DURATION_SECONDS = 40;
export const NODE_LEASE_RENEW_MS = 10_000;

/** The node name of a node-agent Lease, or undefined for any other Lease. */
export function nodeOfLease(lease: V1Lease): string | undefined {
  const name = lease.metadata?.name ?? '';
  const prefix = nodeLeaseName('');
  return name.startsWith(prefix) && name.length > prefix.length
    ? name.slice(prefix.length)
    : undefined;
}

/** A MicroTime as read back (a string, or a Date from the typed client) in epoch ms. */
export function timeMillis(t: Date | string | undefined | null): number | undefined {
  if (t === undefined || t === null) return undefined;
  const ms = typeof t === 'string' ? Date.parse(t) : t.getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The one freshness rule (DESIGN §3): a Lease renewed at `renewedAt` (epoch ms) for
 * `durationSeconds` is fresh while now < renewedAt + duration. Undefined (never fresh) without
 * both, or with a zero duration.
 */
export function freshUntil(
  renewedAt: number | undefined,
  durationSeconds: number | undefined,
): number | undefined {
  if (renewedAt === undefined || !durationSeconds) return undefined;
  return renewedAt + durationSeconds * 1000;
}

/** When the Lease stops being fresh (renewTime + leaseDurationSeconds), or undefined if it never was. */
export function leaseExpiry(lease: V1Lease | undefined): number | undefined {
  return freshUntil(
    timeMillis(lease?.spec?.renewTime as Date | string | undefined),
    lease?.spec?.leaseDurationSeconds,
  );
}

/** Fresh by the Lease's own renewTime and duration (freshUntil). */
export function leaseIsFresh(lease: V1Lease | undefined, now: number): boolean {
  const exp = leaseExpiry(lease);
  return exp !== undefined && now < exp;
}

/** Whether `me` may take the Lease: nobody holds it, `me` already does, or the holder let it expire. */
export function canAcquire(lease: V1Lease | undefined, me: string, now: number): boolean {
  const holder = lease?.spec?.holderIdentity;
  if (!holder || holder === me) return true;
  return !leaseIsFresh(lease, now);
}

export interface NodeCapacity {
  sandboxes: number;
  memoryMiB: number;
}

/** The capacity a node agent advertises; undefined when either annotation is missing or not a number. */
export function leaseCapacity(lease: V1Lease): NodeCapacity | undefined {
  const a = lease.metadata?.annotations ?? {};
  const sandboxes = Number(a[CAPACITY_SANDBOXES_ANNOTATION]);
  const memoryMiB = Number(a[CAPACITY_MEMORY_MIB_ANNOTATION]);
  if (!Number.isFinite(sandboxes) || !Number.isFinite(memoryMiB)) return undefined;
  if (
    a[CAPACITY_SANDBOXES_ANNOTATION] === undefined ||
    a[CAPACITY_MEMORY_MIB_ANNOTATION] === undefined
  )
    return undefined;
  return { sandboxes, memoryMiB };
}

/** What a node's sandboxes that have not ended hold: their VMs' guest memory and vCPUs. */
export interface NodeAllocation extends NodeCapacity {
  vcpus: number;
  /** Ready warm VMs by shape key (crds/warm-shape.ts), not counted above. */
  warmReady?: Record<string, number>;
}

export function allocationAnnotations(a: NodeAllocation): Record<string, string> {
  const warm = Object.fromEntries(
    Object.entries(a.warmReady ?? {})
      .filter(([, n]) => n > 0)
      .sort(([x], [y]) => x.localeCompare(y)),
  );
  return {
    [ALLOCATED_SANDBOXES_ANNOTATION]: String(a.sandboxes),
    [ALLOCATED_MEMORY_MIB_ANNOTATION]: String(a.memoryMiB),
    [ALLOCATED_VCPUS_ANNOTATION]: String(a.vcpus),
    [WARM_READY_ANNOTATION]: JSON.stringify(warm),
  };
}

/** The ready warm VMs a Lease advertises, by shape key; {} when none or unreadable. */
export function leaseWarmReady(lease: V1Lease): Record<string, number> {
  const raw = lease.metadata?.annotations?.[WARM_READY_ANNOTATION];
  if (!raw || raw.length > 4096) return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
    return Object.fromEntries(
      Object.entries(parsed).filter(
        (e): e is [string, number] => Number.isInteger(e[1]) && (e[1] as number) > 0,
      ),
    );
  } catch {
    return {};
  }
}

export function capacityAnnotations(c: NodeCapacity): Record<string, string> {
  return {
    [CAPACITY_SANDBOXES_ANNOTATION]: String(Math.max(0, Math.floor(c.sandboxes))),
    [CAPACITY_MEMORY_MIB_ANNOTATION]: String(Math.max(0, Math.floor(c.memoryMiB))),
  };
}

/**
 * The Lease `holder` writes to take or keep `prev` (undefined → a new Lease): renewTime now,
 * acquireTime and leaseTransitions moved only when the holder changes (as client-go counts them,
 * taking a released Lease is a transition too); resourceVersion kept so the
 * replace fails with 409 if someone wrote in between.
 */
export function renewedLease(
  prev: V1Lease | undefined,
  ref: { namespace: string; name: string },
  holder: string,
  leaseDurationSeconds: number,
  now: Date,
  annotations?: Record<string, string>,
): V1Lease {
  const prevHolder = prev?.spec?.holderIdentity;
  const changed = prevHolder !== holder;
  const transitions = prev?.spec?.leaseTransitions ?? 0;
  // MicroTime must be written with 6 fractional digits; a plain Date serialises with 3.
  const at = new V1MicroTime(now.getTime());
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      ...(prev?.metadata ?? {}),
      name: ref.name,
      namespace: ref.namespace,
      annotations: { ...(prev?.metadata?.annotations ?? {}), ...(annotations ?? {}) },
      // managedFields must not be sent back on an update
      managedFields: undefined,
    },
    spec: {
      holderIdentity: holder,
      leaseDurationSeconds,
      acquireTime: changed || !prev?.spec?.acquireTime ? at : prev.spec.acquireTime,
      renewTime: at,
      leaseTransitions: prev && changed ? transitions + 1 : transitions,
    },
  };
}

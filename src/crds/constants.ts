// Names shared by the CRD, the controller and the node agent (docs/architecture.md).
export const CRD_GROUP = 'kata.sandbox.io';
export const CRD_VERSION = 'v1alpha1';
export const API_VERSION = `${CRD_GROUP}/${CRD_VERSION}` as const;
export const KIND = 'KataSandbox';
export const LIST_KIND = 'KataSandboxList';
export const PLURAL = 'katasandboxes';
export const SINGULAR = 'katasandbox';
export const SHORT_NAMES = ['ksb'] as const;
// `all` as Pods are: `kubectl get all` lists sandboxes beside the workloads.
export const CATEGORIES = ['all', 'kata'] as const;
export const CRD_NAME = `${PLURAL}.${CRD_GROUP}`;

/** The cluster-scoped KataWarmPool resource (docs/warm-pools.md). */
export const WARM_POOL_KIND = 'KataWarmPool';
export const WARM_POOL_LIST_KIND = 'KataWarmPoolList';
export const WARM_POOL_PLURAL = 'katawarmpools';
export const WARM_POOL_SINGULAR = 'katawarmpool';
export const WARM_POOL_SHORT_NAMES = ['kwp'] as const;
export const WARM_POOL_CRD_NAME = `${WARM_POOL_PLURAL}.${CRD_GROUP}`;

/** Namespace of the controller, the node agents and their Leases. */
export const SYSTEM_NAMESPACE = 'kata-system';

/** Label the controller sets to the chosen node; each node agent watches only its own. */
export const NODE_LABEL = 'kata.sandbox.io/node';
/** Finalizer: removed once the node's host work is cleaned up (or there never was any). */
export const NODE_CLEANUP_FINALIZER = 'kata.sandbox.io/node-cleanup';
/** Node agent Lease annotations advertising the node's capacity. */
export const CAPACITY_SANDBOXES_ANNOTATION = 'kata.sandbox.io/capacity-sandboxes';
export const CAPACITY_MEMORY_MIB_ANNOTATION = 'kata.sandbox.io/capacity-memory-mib';
/** Node agent Lease annotations saying what the node's sandboxes that have not ended hold. */
export const ALLOCATED_SANDBOXES_ANNOTATION = 'kata.sandbox.io/allocated-sandboxes';
export const ALLOCATED_MEMORY_MIB_ANNOTATION = 'kata.sandbox.io/allocated-memory-mib';
export const ALLOCATED_VCPUS_ANNOTATION = 'kata.sandbox.io/allocated-vcpus';
/**
 * Node agent Lease annotation: the node's ready warm VMs per VM shape (JSON object, shape key →
 * count), so the controller prefers a node where a sandbox can take one.
 */
export const WARM_READY_ANNOTATION = 'kata.sandbox.io/warm-ready';

/** Name of the node agent's Lease for a node (in SYSTEM_NAMESPACE). */
export function nodeLeaseName(nodeName: string): string {
  return `kata-node-${nodeName}`;
}

/** Field managers for server-side apply of status (one writer per field). */
export const CONTROLLER_FIELD_MANAGER = 'kata-controller';
export const NODE_AGENT_FIELD_MANAGER = 'kata-node-agent';

/** Condition types and their writers (docs/architecture.md, who writes what). */
export const CONDITION_TYPES = {
  Scheduled: 'Scheduled',
  VMReady: 'VMReady',
  AgentConnected: 'AgentConnected',
  NetworkReady: 'NetworkReady',
  ContainersReady: 'ContainersReady',
  Ready: 'Ready',
  Terminated: 'Terminated',
} as const;
export type ConditionType = (typeof CONDITION_TYPES)[keyof typeof CONDITION_TYPES];
/** The conditions a node agent's step can fail (its errors carry one, with their reason). */
export type StepCondition = Extract<
  ConditionType,
  'VMReady' | 'AgentConnected' | 'NetworkReady' | 'ContainersReady'
>;

/**
 * Container reasons that mean "this is what is wrong", as `kubectl get pods` shows them in place
 * of the phase: they win the sandbox's status.reason over a step still in progress.
 */
export const CONTAINER_PROBLEM_REASONS: ReadonlySet<string> = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'ErrImageNeverPull',
  'CrashLoopBackOff',
]);

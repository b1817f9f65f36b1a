// The KataWarmPool resource (cluster-scoped): VMs of one shape that node agents boot before any
// sandbox asks, so a matching sandbox takes one instead of booting (docs/warm-pools.md). The VM
// shape is the sandbox's own schema (spec.vm), so "matches" means equal fields.
import type { V1ListMeta, V1ObjectMeta } from '@kubernetes/client-node';
import { int, mapList, obj, str, type Infer } from './schema.js';
import { conditionSchema, nodeSelectorSchema, vmSpecSchema } from './katasandbox.js';

/** Replicas per node above this are refused: each is a VM held idle on every matching node. */
export const MAX_WARM_REPLICAS_PER_NODE = 16;
/** The most memory one pool may hold idle on one node (replicas × memoryMiB), in MiB. */
export const MAX_WARM_MEMORY_PER_NODE_MIB = 256 * 1024;

export const warmPoolSpecSchema = obj(
  {
    vm: vmSpecSchema,
    replicasPerNode: int({
      description:
        `Idle VMs to keep booted on each matching node, 0 to ${MAX_WARM_REPLICAS_PER_NODE}. A ` +
        'node agent keeps fewer when its free capacity is short (status.nodes[].message says ' +
        'why) and stops warm VMs before a cold-booting sandbox would overcommit the node.',
      minimum: 0,
      maximum: MAX_WARM_REPLICAS_PER_NODE,
      default: 1,
    }),
    nodeSelector: nodeSelectorSchema,
  },
  {
    description: 'The VM shape to keep warm, how many per node, and on which nodes.',
    validations: [
      {
        rule: `self.replicasPerNode * self.vm.memoryMiB <= ${MAX_WARM_MEMORY_PER_NODE_MIB}`,
        message: `replicasPerNode × vm.memoryMiB must be at most ${MAX_WARM_MEMORY_PER_NODE_MIB} MiB (256 GiB) per node`,
        fieldPath: '.replicasPerNode',
      },
    ],
  },
);

export const warmPoolNodeStatusSchema = obj(
  {
    node: str({ description: 'The node this entry is about.', maxLength: 253 }),
    desired: int({
      description:
        'Warm VMs the node agent aims for: replicasPerNode, or fewer when capacity is short.',
      minimum: 0,
    }),
    ready: int({ description: 'Booted, idle VMs whose agent answers.', minimum: 0 }),
    booting: int({ description: 'VMs being booted (refills).', minimum: 0 }),
    claimed: int({
      description:
        'VMs of this pool now serving sandboxes on the node (never returned to the pool).',
      minimum: 0,
    }),
    message: str({
      description: 'Why desired is below replicasPerNode, or the last boot failure.',
      maxLength: 1024,
    }),
    updatedAt: str({
      description: 'When the node agent last wrote this entry.',
      format: 'date-time',
      maxLength: 64,
    }),
  },
  {
    description: "One node's warm VMs of this pool, written by that node's agent only.",
    required: ['node'],
  },
);

export const warmPoolStatusSchema = obj(
  {
    nodes: mapList(warmPoolNodeStatusSchema, ['node'], {
      description: 'Per matching node: its warm VMs by state.',
      maxItems: 5000,
    }),
    conditions: mapList(conditionSchema, ['type'], {
      description: 'Ready: every node that reports has its desired VMs ready.',
      maxItems: 8,
    }),
  },
  { description: 'Observed state, per node.' },
);

export type WarmPoolSpec = Infer<typeof warmPoolSpecSchema>;
export type WarmPoolNodeStatus = Infer<typeof warmPoolNodeStatusSchema>;
export type WarmPoolStatus = Infer<typeof warmPoolStatusSchema>;

export interface KataWarmPool {
  apiVersion: 'kata.sandbox.io/v1alpha1';
  kind: 'KataWarmPool';
  metadata: V1ObjectMeta;
  spec: WarmPoolSpec;
  status?: WarmPoolStatus;
}

export interface KataWarmPoolList {
  apiVersion: 'kata.sandbox.io/v1alpha1';
  kind: 'KataWarmPoolList';
  metadata: V1ListMeta;
  items: KataWarmPool[];
}

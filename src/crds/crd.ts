// The CustomResourceDefinition objects, built from the schemas in katasandbox.ts and
// katawarmpool.ts.
import {
  CATEGORIES,
  CRD_GROUP,
  CRD_NAME,
  CRD_VERSION,
  KIND,
  LIST_KIND,
  PLURAL,
  SHORT_NAMES,
  SINGULAR,
  WARM_POOL_CRD_NAME,
  WARM_POOL_KIND,
  WARM_POOL_LIST_KIND,
  WARM_POOL_PLURAL,
  WARM_POOL_SHORT_NAMES,
  WARM_POOL_SINGULAR,
} from './constants.js';
import { specSchema, statusSchema } from './katasandbox.js';
import { warmPoolSpecSchema, warmPoolStatusSchema } from './katawarmpool.js';
import type { JSONSchemaProps } from './schema.js';

function resourceSchema(
  description: string,
  spec: JSONSchemaProps,
  status: JSONSchemaProps,
): JSONSchemaProps {
  return {
    type: 'object',
    description,
    required: ['spec'],
    properties: {
      apiVersion: {
        type: 'string',
        description: 'APIVersion defines the versioned schema of this representation of an object.',
      },
      kind: {
        type: 'string',
        description:
          'Kind is a string value representing the REST resource this object represents.',
      },
      // Only `type` (plus name/generateName): the apiserver refuses anything else on metadata, even a description.
      metadata: { type: 'object' },
      spec,
      status,
    },
  };
}

/** The full openAPIV3Schema of the KataSandbox resource. */
export function openApiSchema(): JSONSchemaProps {
  return resourceSchema(
    'KataSandbox runs containers inside a dedicated QEMU virtual machine on one node: the ' +
      'controller schedules it, the node agent boots the VM and the guest agent starts the ' +
      'containers.',
    specSchema.json,
    statusSchema.json,
  );
}

/** The full openAPIV3Schema of the KataWarmPool resource. */
export function warmPoolOpenApiSchema(): JSONSchemaProps {
  return resourceSchema(
    'KataWarmPool keeps VMs of one shape booted and idle on matching nodes; a KataSandbox of ' +
      'that shape scheduled there takes one instead of booting (docs/warm-pools.md).',
    warmPoolSpecSchema.json,
    warmPoolStatusSchema.json,
  );
}

export function buildWarmPoolCrd() {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: WARM_POOL_CRD_NAME },
    spec: {
      group: CRD_GROUP,
      names: {
        kind: WARM_POOL_KIND,
        listKind: WARM_POOL_LIST_KIND,
        plural: WARM_POOL_PLURAL,
        singular: WARM_POOL_SINGULAR,
        shortNames: [...WARM_POOL_SHORT_NAMES],
        categories: ['kata'],
      },
      scope: 'Cluster',
      versions: [
        {
          name: CRD_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Per-Node', type: 'integer', jsonPath: '.spec.replicasPerNode' },
            { name: 'vCPUs', type: 'integer', jsonPath: '.spec.vm.vcpus' },
            { name: 'Memory(MiB)', type: 'integer', jsonPath: '.spec.vm.memoryMiB' },
            {
              name: 'Ready',
              type: 'string',
              description: 'Ready warm VMs of each reporting node, in status.nodes order.',
              jsonPath: '.status.nodes[*].ready',
            },
            {
              name: 'Claimed',
              type: 'string',
              priority: 1,
              jsonPath: '.status.nodes[*].claimed',
            },
            { name: 'Nodes', type: 'string', priority: 1, jsonPath: '.status.nodes[*].node' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: { openAPIV3Schema: warmPoolOpenApiSchema() },
        },
      ],
    },
  };
}

export function buildCrd() {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: CRD_NAME },
    spec: {
      group: CRD_GROUP,
      names: {
        kind: KIND,
        listKind: LIST_KIND,
        plural: PLURAL,
        singular: SINGULAR,
        shortNames: [...SHORT_NAMES],
        categories: [...CATEGORIES],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: CRD_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          // As `kubectl get pods` shows them; priority 1 columns only with -o wide.
          additionalPrinterColumns: [
            { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
            {
              name: 'Reason',
              type: 'string',
              description: 'Why the sandbox is in its phase: a failure, or what it waits for.',
              jsonPath: '.status.reason',
            },
            { name: 'Node', type: 'string', jsonPath: '.status.nodeName' },
            {
              name: 'Ready',
              type: 'string',
              jsonPath: '.status.conditions[?(@.type=="Ready")].status',
            },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
            { name: 'vCPUs', type: 'integer', priority: 1, jsonPath: '.spec.vm.vcpus' },
            { name: 'Memory(MiB)', type: 'integer', priority: 1, jsonPath: '.spec.vm.memoryMiB' },
            {
              name: 'IP',
              type: 'string',
              priority: 1,
              jsonPath: '.status.network.interfaces[0].addresses[0]',
            },
            { name: 'Boot(ms)', type: 'integer', priority: 1, jsonPath: '.status.vm.bootMillis' },
            {
              name: 'Restarts',
              type: 'string',
              priority: 1,
              description: 'Restarts of each container, in spec order.',
              jsonPath: '.status.containers[*].restartCount',
            },
          ],
          schema: { openAPIV3Schema: openApiSchema() },
        },
      ],
    },
  };
}

// The CustomResourceDefinition object, built from the schema in katasandbox.ts.
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
} from './constants.js';
import { specSchema, statusSchema } from './katasandbox.js';
import type { JSONSchemaProps } from './schema.js';

/** The full openAPIV3Schema of the KataSandbox resource. */
export function openApiSchema(): JSONSchemaProps {
  return {
    type: 'object',
    description:
      'KataSandbox runs containers inside a dedicated QEMU virtual machine on one node: the ' +
      'controller schedules it, the node agent boots the VM and the guest agent starts the ' +
      'containers.',
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
      spec: specSchema.json,
      status: statusSchema.json,
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

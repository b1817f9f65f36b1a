// What the aggregator and kubectl discover under /apis/subresources.kata.sandbox.io/v1alpha1:
// the subresources of katasandboxes, each with the verbs it is authorized with. Pure.
import {
  SUBRESOURCE_GROUP,
  SUBRESOURCE_VERB,
  SUBRESOURCE_VERSION,
  SUBRESOURCES,
} from '../subresources/contract.js';

export function apiResourceList(): object {
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: `${SUBRESOURCE_GROUP}/${SUBRESOURCE_VERSION}`,
    resources: SUBRESOURCES.map((sub) => ({
      name: `katasandboxes/${sub}`,
      singularName: '',
      namespaced: true,
      kind: sub === 'log' ? 'KataSandboxLog' : 'KataSandboxStream',
      verbs: SUBRESOURCE_VERB[sub] === 'get' ? ['get'] : ['get', 'create'],
    })),
  };
}

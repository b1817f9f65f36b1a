import { describe, expect, it } from '@jest/globals';
import { decidePull, defaultPullPolicy } from '../../../src/node-agent/images/policy.js';
import { parseImageReference } from '../../../src/node-agent/images/reference.js';

const D = `sha256:${'cd'.repeat(32)}`;
const ref = parseImageReference;

describe('defaultPullPolicy (Kubernetes defaulting)', () => {
  it.each([
    ['busybox', 'Always'],
    ['busybox:latest', 'Always'],
    ['busybox:1.36', 'IfNotPresent'],
    [`busybox@${D}`, 'IfNotPresent'],
    [`busybox:latest@${D}`, 'Always'],
  ])('%s → %s', (image, policy) => {
    expect(defaultPullPolicy(ref(image))).toBe(policy);
  });
});

describe('decidePull', () => {
  const tag = ref('r.example/app:1');
  const pinned = ref(`r.example/app@${D}`);
  it.each([
    ['IfNotPresent', tag, undefined, { action: 'pull' }],
    ['IfNotPresent', tag, D, { action: 'use-cached', digest: D }],
    ['Always', tag, undefined, { action: 'pull' }],
    ['Always', tag, D, { action: 'pull' }],
    ['Never', tag, undefined, { action: 'never-pull-missing' }],
    ['Never', tag, D, { action: 'use-cached', digest: D }],
    ['Always', pinned, D, { action: 'use-cached', digest: D }],
    ['Always', pinned, undefined, { action: 'pull' }],
    ['IfNotPresent', pinned, D, { action: 'use-cached', digest: D }],
    ['Never', pinned, undefined, { action: 'never-pull-missing' }],
  ] as const)('%s, %p, cached %p', (policy, r, cached, want) => {
    expect(decidePull(policy, r, cached)).toEqual(want);
  });
});

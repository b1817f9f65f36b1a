import { describe, expect, it } from '@jest/globals';
import type { KubernetesObject } from '@kubernetes/client-node';
import { KubeApiError } from '../../../src/kube/kube-client.js';
import {
  addFinalizerPatch,
  isStaleWrite,
  removeFinalizerPatch,
} from '../../../src/kube/finalizers.js';

const F = 'kata.sandbox.io/node-cleanup';
const sandbox = (finalizers?: string[], deleting = false): KubernetesObject => ({
  metadata: {
    name: 'web',
    namespace: 'default',
    resourceVersion: '42',
    finalizers,
    deletionTimestamp: deleting ? new Date('2026-01-01T00:00:00Z') : undefined,
  },
});

describe('addFinalizerPatch', () => {
  it('creates the list when there is none, guarded by the resourceVersion', () => {
    expect(addFinalizerPatch(sandbox(), F)).toEqual([
      { op: 'test', path: '/metadata/resourceVersion', value: '42' },
      { op: 'add', path: '/metadata/finalizers', value: [F] },
    ]);
  });

  it('appends to an existing list', () => {
    expect(addFinalizerPatch(sandbox(['other']), F)).toEqual([
      { op: 'test', path: '/metadata/resourceVersion', value: '42' },
      { op: 'add', path: '/metadata/finalizers/-', value: F },
    ]);
  });

  it('does nothing when present or once deletion has begun', () => {
    expect(addFinalizerPatch(sandbox([F]), F)).toBeUndefined();
    expect(addFinalizerPatch(sandbox([], true), F)).toBeUndefined();
  });
});

describe('removeFinalizerPatch', () => {
  it('removes by index, testing the resourceVersion and the item at that index', () => {
    expect(removeFinalizerPatch(sandbox(['a', F, 'b'], true), F)).toEqual([
      { op: 'test', path: '/metadata/resourceVersion', value: '42' },
      { op: 'test', path: '/metadata/finalizers/1', value: F },
      { op: 'remove', path: '/metadata/finalizers/1' },
    ]);
  });

  it('does nothing when absent', () => {
    expect(removeFinalizerPatch(sandbox(['a']), F)).toBeUndefined();
    expect(removeFinalizerPatch(sandbox(), F)).toBeUndefined();
  });
});

describe('isStaleWrite', () => {
  it('is true for 409 and 422 only', () => {
    expect(isStaleWrite(new KubeApiError(409, 'x', 'Conflict', {}))).toBe(true);
    expect(isStaleWrite(new KubeApiError(422, 'x', 'Invalid', {}))).toBe(true);
    expect(isStaleWrite(new KubeApiError(404, 'x', 'NotFound', {}))).toBe(false);
  });
});

import { describe, expect, it } from '@jest/globals';
import { buildStatusApply } from '../../../src/kube/status-patch.js';

describe('buildStatusApply', () => {
  it('carries only identity and the given status subset', () => {
    const body = buildStatusApply(
      { namespace: 'default', name: 'web' },
      { nodeName: 'n1', observedGeneration: 2 },
    );
    expect(body).toEqual({
      apiVersion: 'kata.sandbox.io/v1alpha1',
      kind: 'KataSandbox',
      metadata: { name: 'web', namespace: 'default' },
      status: { nodeName: 'n1', observedGeneration: 2 },
    });
  });

  it('works for another resource', () => {
    const body = buildStatusApply(
      { namespace: 'x', name: 'y' },
      {},
      { group: 'g.io', version: 'v1', plural: 'ws', kind: 'W' },
    );
    expect(body.apiVersion).toBe('g.io/v1');
    expect(body.kind).toBe('W');
  });
});

import { describe, expect, it } from '@jest/globals';
import type { ImageHandle } from '../../../src/node-agent/images/image-store.js';
import { ImagePullError } from '../../../src/node-agent/images/pull-errors.js';
import {
  backOffEvent,
  pullFailureMessage,
  pulledEvent,
  pullingEvent,
} from '../../../src/node-agent/images/pull-events.js';

const h = (outcome: ImageHandle['outcome']): ImageHandle => ({
  image: 'reg:5000/app:1',
  reference: 'reg:5000/app:1',
  digest: 'sha256:abc',
  rootfs: '/r',
  config: {},
  userGroups: [],
  bytes: 2_000_000,
  downloadedBytes: outcome === 'pulled' ? 900_000 : 0,
  outcome,
  durationMs: 2500,
});

describe('pull Events (kubelet wording)', () => {
  it('Pulling, Pulled by outcome, BackOff', () => {
    expect(pullingEvent('app:1')).toEqual({
      type: 'Normal',
      reason: 'Pulling',
      note: 'Pulling image "app:1"',
    });
    expect(pulledEvent(h('pulled')).note).toBe(
      'Successfully pulled image "reg:5000/app:1" in 2.500s: sha256:abc, 900000 bytes downloaded. Image size: 2000000 bytes.',
    );
    expect(pulledEvent(h('cache-hit')).note).toBe(
      'Container image "reg:5000/app:1" already present on machine',
    );
    expect(pulledEvent(h('up-to-date')).note).toContain('sha256:abc already on this node');
    expect(backOffEvent('app:1').note).toBe('Back-off pulling image "app:1"');
  });

  it('an authorization failure says whether any imagePullSecret matched', () => {
    const e = new ImagePullError('ErrImagePull', 'Unauthorized', 'p:1', 'unauthorized');
    expect(pullFailureMessage(e, 0)).toBe(
      'Failed to pull image "p:1": unauthorized (no imagePullSecret of this sandbox has credentials for this registry)',
    );
    expect(pullFailureMessage(e, 1)).toBe('Failed to pull image "p:1": unauthorized');
    const nf = new ImagePullError('ErrImagePull', 'NotFound', 'p:1', 'manifest unknown');
    expect(pullFailureMessage(nf, 0)).toBe('Failed to pull image "p:1": manifest unknown');
  });
});

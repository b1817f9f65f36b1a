// What this node agent can run: container images (spec.containers[].image) are refused with
// reason NotSupported when no image step is configured.
import type { KataSandboxSpec } from '../../crds/index.js';
import type { StepFailure } from './sandbox-status.js';

/** The refusal of a feature this node agent is not set up to run. Pure. */
export function unsupportedFeature(
  spec: KataSandboxSpec,
  can: { images: boolean },
): StepFailure | undefined {
  for (const [i, c] of spec.containers.entries()) {
    if (c.image && !can.images) {
      return {
        condition: 'ContainersReady',
        reason: 'NotSupported',
        message: `spec.containers[${i}].image: this node agent runs without an image cache; use rootfs.hostPath or rootfs.block`,
      };
    }
  }
  return undefined;
}

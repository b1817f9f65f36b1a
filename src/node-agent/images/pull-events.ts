// What a container waiting for its image shows, and the Events of a pull, in kubelet's words
// (Pulling, Pulled, Failed, BackOff) so `kubectl describe` reads the same as for a Pod. Pure.
import type { ImageHandle } from './image-store.js';
import type { ImagePullError } from './pull-errors.js';

export type ImageWaitingReason =
  'Pulling' | 'ErrImagePull' | 'ImagePullBackOff' | 'ErrImageNeverPull';

export interface PullEvent {
  type: 'Normal' | 'Warning';
  reason: 'Pulling' | 'Pulled' | 'Failed' | 'BackOff';
  note: string;
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(3)}s`;

export function pullingEvent(image: string): PullEvent {
  return { type: 'Normal', reason: 'Pulling', note: `Pulling image "${image}"` };
}

export function pulledEvent(h: ImageHandle): PullEvent {
  const note =
    h.outcome === 'cache-hit'
      ? `Container image "${h.image}" already present on machine`
      : h.outcome === 'up-to-date'
        ? `Successfully pulled image "${h.image}" in ${secs(h.durationMs)}: ${h.digest} already on this node. Image size: ${h.bytes} bytes.`
        : `Successfully pulled image "${h.image}" in ${secs(h.durationMs)}: ${h.digest}, ${h.downloadedBytes} bytes downloaded. Image size: ${h.bytes} bytes.`;
  return { type: 'Normal', reason: 'Pulled', note };
}

/**
 * The message of a failed pull; an authorization failure with no matching imagePullSecret says
 * so, because "unauthorized" alone does not tell the user which half is missing.
 */
export function pullFailureMessage(err: ImagePullError, matchingCredentials: number): string {
  if (err.kind === 'Unauthorized' && matchingCredentials === 0) {
    return `${err.message} (no imagePullSecret of this sandbox has credentials for this registry)`;
  }
  return err.message;
}

export function failedEvent(message: string): PullEvent {
  return { type: 'Warning', reason: 'Failed', note: message };
}

export function backOffEvent(image: string): PullEvent {
  return { type: 'Normal', reason: 'BackOff', note: `Back-off pulling image "${image}"` };
}

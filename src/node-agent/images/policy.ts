// When to contact the registry, by Kubernetes' imagePullPolicy rules. Pure.
import type { ImageReference } from './reference.js';

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

/**
 * Kubernetes' defaulting: `Always` when the tag is `latest` (written, or implied by a reference
 * with neither tag nor digest), `IfNotPresent` otherwise (a digest-only reference included).
 */
export function defaultPullPolicy(ref: ImageReference): PullPolicy {
  return ref.tag === 'latest' ? 'Always' : 'IfNotPresent';
}

export type PullDecision =
  /** Use the cached image with this digest; the registry is not contacted. */
  | { action: 'use-cached'; digest: string }
  /** Contact the registry (resolve the tag, then download what the cache lacks). */
  | { action: 'pull' }
  /** Policy Never and nothing cached: Kubernetes' ErrImageNeverPull. */
  | { action: 'never-pull-missing' };

/**
 * `cachedDigest` is what the cache holds for this reference: for a digest reference, that digest
 * when it is cached; for a tag, the digest it last resolved to. A digest reference is never pulled
 * again once cached, whatever the policy: its content cannot change.
 */
export function decidePull(
  policy: PullPolicy,
  ref: ImageReference,
  cachedDigest: string | undefined,
): PullDecision {
  if (cachedDigest !== undefined && (ref.digest !== undefined || policy !== 'Always')) {
    return { action: 'use-cached', digest: cachedDigest };
  }
  if (policy === 'Never') {
    return cachedDigest !== undefined
      ? { action: 'use-cached', digest: cachedDigest }
      : { action: 'never-pull-missing' };
  }
  return { action: 'pull' };
}

// Container images on the node: references, pull policy, registry auth, the content-addressed
// cache (skopeo + umoci), per-sandbox copy-on-write views, pull backoff, metrics. docs/images.md.
export * from './image-metrics.js';
export * from './image-store.js';
export * from './lru.js';
export * from './oci-manifest.js';
export * from './policy.js';
export * from './pull-backoff.js';
export * from './pull-errors.js';
export * from './reference.js';
export * from './registry-allow.js';
export * from './registry-auth.js';
export * from './rootfs-view.js';
export * from './container-images.js';
export * from './pull-events.js';
export type { ImageConfig } from '../../agent/oci/image-config.js';

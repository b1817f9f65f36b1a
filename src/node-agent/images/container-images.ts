// The image step of a sandbox's creation (DESIGN §4): for each container with `image`, the image
// from the node cache (pulled by policy, retried with kubelet's backoff while the registry
// refuses) and the container's own copy-on-write view of it, which the runtime binds into the 9p
// share as <share>/<container>/rootfs. Release drops the views and the sandbox's cache leases.
import type { KataSandboxSpec } from '../../crds/index.js';
import { sleep } from '../../common/sleep.js';
import type { Logger } from '../../observability/logger.js';
import type { ImageHandle, ImageStore } from './image-store.js';
import type { PullPolicy } from './policy.js';
import {
  DEFAULT_PULL_BACKOFF,
  type PullBackoffOptions,
  type PullBackoffState,
  pullGate,
  recordPullFailure,
} from './pull-backoff.js';
import { ImagePullError } from './pull-errors.js';
import {
  type ImageWaitingReason,
  type PullEvent,
  backOffEvent,
  failedEvent,
  pullFailureMessage,
  pulledEvent,
  pullingEvent,
} from './pull-events.js';
import { InvalidImageNameError, parseImageReference } from './reference.js';
import { registryAllowed, registryNotAllowedMessage } from './registry-allow.js';
import { type PullSecret, credentialsFor } from './registry-auth.js';
import type { RootfsView, RootfsViews } from './rootfs-view.js';

export interface ContainerImagesOptions {
  store: ImageStore;
  views: RootfsViews;
  backoff?: PullBackoffOptions;
  /** --allowed-registries: the only registries images are pulled from (empty: any). */
  allowedRegistries?: readonly string[];
  now?: () => number;
  logger?: Logger;
}

export interface PrepareImageRequest {
  sandboxUid: string;
  container: string;
  image: string;
  policy?: PullPolicy;
  /** Read for every attempt, so a Secret created after a refusal is used by the next one. */
  pullSecrets: () => Promise<PullSecret[]>;
  signal: AbortSignal;
  onWaiting: (reason: ImageWaitingReason, message: string) => void;
  onEvent: (event: PullEvent) => void;
}

export interface PreparedImage {
  handle: ImageHandle;
  view: RootfsView;
}

/** An image reference that can never be pulled: the sandbox fails (its spec cannot change). */
export interface InvalidImage {
  field: string;
  reason: 'InvalidImageName' | 'RegistryNotAllowed';
  message: string;
}

/** An image from a registry the node's allow-list leaves out; thrown before any request. */
export class RegistryNotAllowedError extends Error {
  readonly reason = 'RegistryNotAllowed';
  override readonly name = 'RegistryNotAllowedError';
}

/**
 * The first container image that does not parse or whose registry is not on `allowedRegistries`
 * (empty: any), naming its field. Pure.
 */
export function invalidImage(
  spec: KataSandboxSpec,
  allowedRegistries: readonly string[] = [],
): InvalidImage | undefined {
  for (const [i, c] of spec.containers.entries()) {
    if (c.image === undefined) continue;
    const field = `spec.containers[${i}].image`;
    try {
      const ref = parseImageReference(c.image);
      if (!registryAllowed(ref.registry, allowedRegistries)) {
        return {
          field,
          reason: 'RegistryNotAllowed',
          message: registryNotAllowedMessage(field, ref, allowedRegistries),
        };
      }
    } catch (err) {
      if (err instanceof InvalidImageNameError) {
        return { field, reason: 'InvalidImageName', message: `${field}: ${err.message}` };
      }
      throw err;
    }
  }
  return undefined;
}

export class ContainerImages {
  constructor(private readonly opts: ContainerImagesOptions) {}

  get allowedRegistries(): readonly string[] {
    return this.opts.allowedRegistries ?? [];
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /**
   * The image of one container, leased to the sandbox, and the container's view of it. Pull
   * failures are retried (ErrImagePull for the first half of the backoff, ImagePullBackOff for
   * the rest, as kubelet shows them) until the pull succeeds or `signal` ends the sandbox.
   */
  async prepare(req: PrepareImageRequest): Promise<PreparedImage> {
    const opts = this.opts.backoff ?? DEFAULT_PULL_BACKOFF;
    const ref = parseImageReference(req.image);
    // Also checked when the sandbox is created; this keeps every path to the registry behind it.
    if (!registryAllowed(ref.registry, this.allowedRegistries)) {
      throw new RegistryNotAllowedError(
        registryNotAllowedMessage(`container ${req.container}`, ref, this.allowedRegistries),
      );
    }
    let backoff: PullBackoffState | undefined;
    let handle: ImageHandle | undefined;
    while (!handle) {
      req.signal.throwIfAborted();
      const gate = pullGate(backoff, this.now(), req.image);
      if (!gate.pull) {
        await sleep(gate.retryInMs, req.signal);
        continue;
      }
      const secrets = await req.pullSecrets();
      try {
        handle = await this.opts.store.ensureImage({
          image: req.image,
          ...(req.policy && { policy: req.policy }),
          pullSecrets: secrets,
          sandboxUid: req.sandboxUid,
          signal: req.signal,
          onPulling: () => {
            req.onWaiting('Pulling', `pulling image "${req.image}"`);
            req.onEvent(pullingEvent(req.image));
          },
        });
      } catch (err) {
        if (!(err instanceof ImagePullError) || req.signal.aborted) throw err;
        const message = pullFailureMessage(err, credentialsFor(ref, secrets).length);
        backoff = recordPullFailure(backoff, this.now(), message, opts);
        this.opts.logger?.warn(
          {
            container: req.container,
            image: req.image,
            kind: err.kind,
            retryInMs: backoff.delayMs,
          },
          'image pull failed',
        );
        req.onWaiting(
          err.reason === 'ErrImageNeverPull' ? 'ErrImageNeverPull' : 'ErrImagePull',
          message,
        );
        req.onEvent(failedEvent(message));
        await sleep(backoff.delayMs / 2, req.signal);
        if (err.reason !== 'ErrImageNeverPull') {
          const g = pullGate(backoff, this.now(), req.image);
          if (!g.pull) req.onWaiting(g.reason, g.message);
          req.onEvent(backOffEvent(req.image));
        }
      }
    }
    req.onEvent(pulledEvent(handle));
    const view = await this.opts.views.prepare({
      sandboxUid: req.sandboxUid,
      container: req.container,
      lowerDir: handle.rootfs,
      signal: req.signal,
    });
    return { handle, view };
  }

  /** Unmounts and deletes the sandbox's views, then drops its leases. Idempotent. */
  async release(sandboxUid: string): Promise<void> {
    await this.opts.views.teardown(sandboxUid);
    await this.opts.store.release(sandboxUid);
  }

  /** After a restart: views and leases of sandboxes that no longer run on this node. */
  async releaseAllExcept(alive: ReadonlySet<string>): Promise<string[]> {
    const gone = new Set<string>();
    for (const uid of await this.opts.views.sandboxes()) {
      if (!alive.has(uid)) {
        await this.opts.views.teardown(uid);
        gone.add(uid);
      }
    }
    for (const uid of await this.opts.store.releaseAllExcept(alive)) gone.add(uid);
    return [...gone].sort();
  }
}

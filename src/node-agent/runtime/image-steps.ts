// Container images of one sandbox, prepared while its VM boots: the pull (with the sandbox's pull
// secrets), the container's own view, and that view bound at <share>/<container>/rootfs. Waiting
// reasons (ErrImagePull, ImagePullBackOff, …) reach the container's status as they happen.
import { CONTAINER_PROBLEM_REASONS } from '../../crds/index.js';
import type { ContainerImages, PreparedImage } from '../images/container-images.js';
import { parseImageReference, repositoryName } from '../images/reference.js';
import { rootfsTarget, shareTarget } from '../storage/shared-dir.js';
import type { SandboxContext } from './sandbox-context.js';
import { step } from './step-failure.js';

/**
 * Starts, for every container with an image, its pull and view in the background; each ends with
 * the view bound into the share. A resumed sandbox asks for the digest it already had, so nothing
 * is pulled twice.
 */
export function startImagePulls(ctx: SandboxContext, shareDir: string, signal: AbortSignal): void {
  const images = ctx.host.images;
  if (!images) return;
  for (const c of ctx.spec.containers) {
    if (c.image === undefined || ctx.images.has(c.name)) continue;
    const pinned = ctx.state.images?.[c.name];
    const image = pinned
      ? `${repositoryName(parseImageReference(c.image))}@${pinned.digest}`
      : c.image;
    const task = prepareImage(ctx, images, c.name, image, shareDir, signal);
    task.catch(() => {}); // observed by startContainers; this keeps an early abort quiet
    ctx.images.set(c.name, task);
  }
}

async function prepareImage(
  ctx: SandboxContext,
  images: ContainerImages,
  name: string,
  image: string,
  shareDir: string,
  signal: AbortSignal,
): Promise<PreparedImage> {
  const c = ctx.spec.containers.find((x) => x.name === name);
  const waiting = (reason: string, message: string): void => {
    const st = ctx.state.containers[name];
    if (st?.started) return;
    if (CONTAINER_PROBLEM_REASONS.has(reason) && st?.message !== message)
      ctx.log.warn({ container: name, image, reason }, message);
    ctx.state.containers[name] = {
      created: false,
      started: false,
      state: 'Waiting',
      restartCount: st?.restartCount ?? 0,
      reason,
      message,
    };
    ctx.changed();
  };
  const prepared = await images.prepare({
    sandboxUid: ctx.uid,
    container: name,
    image,
    ...(c?.imagePullPolicy && { policy: c.imagePullPolicy }),
    pullSecrets: () => readPullSecrets(ctx, signal, waiting),
    signal,
    onWaiting: waiting,
    onEvent: (e) => ctx.event(e.type, e.reason, `container ${name}: ${e.note}`),
  });
  const rel = rootfsTarget(name);
  const target = shareTarget(shareDir, rel);
  if (!ctx.state.bindMounts.includes(target)) ctx.state.bindMounts.push(target);
  ctx.state.images = {
    ...ctx.state.images,
    [name]: { reference: prepared.handle.reference, digest: prepared.handle.digest },
  };
  await ctx.save();
  // The guest may have planted a symlink at <share>/<name> by now: the target is walked
  // without following one (the bind fails instead of landing elsewhere).
  await step('ContainersReady', 'SharedDirFailed', () =>
    ctx.host.bindView(shareDir, prepared.view.merged, rel, signal),
  );
  ctx.imageConfigs.set(name, prepared.handle);
  waiting('ContainerCreating', '');
  return prepared;
}

/** Read for every pull attempt, so a Secret created after a refusal is used by the next one. */
async function readPullSecrets(
  ctx: SandboxContext,
  signal: AbortSignal,
  waiting: (reason: string, message: string) => void,
) {
  const refs = ctx.spec.imagePullSecrets ?? [];
  const read = ctx.host.pullSecrets;
  if (refs.length === 0 || !read) return [];
  let told = '';
  const got = await read({
    uid: ctx.uid,
    signal,
    // No usable projection yet: the container says why; a refusal is also an Event, once.
    onWaiting: ({ message, refused }) => {
      if (message === told) return;
      told = message;
      waiting('ContainerCreating', message);
      if (refused) ctx.event('Warning', 'FailedToRetrieveImagePullSecret', message);
    },
  });
  for (const p of got.problems) ctx.event('Warning', 'FailedToRetrieveImagePullSecret', p);
  return got.secrets;
}

import { describe, expect, it } from '@jest/globals';
import type { KataSandboxSpec } from '../../../src/crds/index.js';
import {
  ContainerImages,
  RegistryNotAllowedError,
  invalidImage,
} from '../../../src/node-agent/images/container-images.js';
import type { ImageHandle, ImageStore } from '../../../src/node-agent/images/image-store.js';
import { ImagePullError } from '../../../src/node-agent/images/pull-errors.js';
import type { PullEvent } from '../../../src/node-agent/images/pull-events.js';
import type { RootfsViews } from '../../../src/node-agent/images/rootfs-view.js';

const handle = (image: string): ImageHandle => ({
  image,
  reference: `docker.io/library/${image}`,
  digest: `sha256:${'a'.repeat(64)}`,
  rootfs: '/cache/images/sha256-aaa/rootfs',
  config: { Cmd: ['sh'] },
  userGroups: [],
  bytes: 1000,
  downloadedBytes: 400,
  outcome: 'pulled',
  durationMs: 1234,
});

/** A store whose ensureImage throws the queued errors first, then succeeds. */
function fakeStore(failures: Error[]) {
  const calls: { image: string; secrets: number }[] = [];
  const released: string[] = [];
  const store = {
    ensureImage: (req: Parameters<ImageStore['ensureImage']>[0]) => {
      calls.push({ image: req.image, secrets: req.pullSecrets?.length ?? 0 });
      req.onPulling?.();
      const err = failures.shift();
      return err ? Promise.reject(err) : Promise.resolve(handle(req.image));
    },
    release: (uid: string) => {
      released.push(uid);
      return Promise.resolve();
    },
    releaseAllExcept: (alive: ReadonlySet<string>) =>
      Promise.resolve(['s1', 's2'].filter((u) => !alive.has(u))),
  };
  return { store: store as unknown as ImageStore, calls, released };
}

function fakeViews(onDisk: string[] = []) {
  const torn: string[] = [];
  const views = {
    prepare: (r: { sandboxUid: string; container: string; lowerDir: string }) =>
      Promise.resolve({
        merged: `/views/${r.sandboxUid}/${r.container}/merged`,
        upper: 'u',
        work: 'w',
        lower: r.lowerDir,
      }),
    teardown: (uid: string) => {
      torn.push(uid);
      return Promise.resolve();
    },
    sandboxes: () => Promise.resolve(onDisk),
  };
  return { views: views as unknown as RootfsViews, torn };
}

const notFound = () =>
  new ImagePullError('ErrImagePull', 'NotFound', 'app:2', 'reading manifest 2: manifest unknown');

describe('ContainerImages.prepare', () => {
  it('refuses a registry off the allow-list before the store (and the network) is asked', async () => {
    const { store, calls } = fakeStore([]);
    const { views } = fakeViews();
    const images = new ContainerImages({ store, views, allowedRegistries: ['*.corp.example'] });
    await expect(
      images.prepare({
        sandboxUid: 'uid-1',
        container: 'main',
        image: 'evil.example/app:2',
        pullSecrets: () => Promise.resolve([]),
        signal: new AbortController().signal,
        onWaiting: () => undefined,
        onEvent: () => undefined,
      }),
    ).rejects.toThrow(RegistryNotAllowedError);
    expect(calls).toEqual([]);
  });

  it('retries a refused pull: ErrImagePull, then ImagePullBackOff, then Pulling again, with kubelet Events', async () => {
    const { store, calls } = fakeStore([notFound(), notFound()]);
    const { views } = fakeViews();
    const images = new ContainerImages({ store, views, backoff: { initialMs: 40, maxMs: 80 } });
    const waiting: string[] = [];
    const events: PullEvent[] = [];
    const got = await images.prepare({
      sandboxUid: 'uid-1',
      container: 'main',
      image: 'app:2',
      pullSecrets: () => Promise.resolve([]),
      signal: new AbortController().signal,
      onWaiting: (reason) => waiting.push(reason),
      onEvent: (e) => events.push(e),
    });
    expect(calls).toHaveLength(3);
    expect(waiting).toEqual([
      'Pulling',
      'ErrImagePull',
      'ImagePullBackOff',
      'Pulling',
      'ErrImagePull',
      'ImagePullBackOff',
      'Pulling',
    ]);
    expect(events.map((e) => `${e.type}/${e.reason}`)).toEqual([
      'Normal/Pulling',
      'Warning/Failed',
      'Normal/BackOff',
      'Normal/Pulling',
      'Warning/Failed',
      'Normal/BackOff',
      'Normal/Pulling',
      'Normal/Pulled',
    ]);
    expect(events[1]?.note).toBe(
      'Failed to pull image "app:2": reading manifest 2: manifest unknown',
    );
    expect(events.at(-1)?.note).toContain('400 bytes downloaded. Image size: 1000 bytes.');
    expect(got.view.merged).toBe('/views/uid-1/main/merged');
    expect(got.view.lower).toBe('/cache/images/sha256-aaa/rootfs');
  });

  it('an unauthorized pull without a matching imagePullSecret says so; secrets are read per attempt', async () => {
    const { store, calls } = fakeStore([
      new ImagePullError('ErrImagePull', 'Unauthorized', 'reg.example/p:1', 'unauthorized'),
    ]);
    const { views } = fakeViews();
    const images = new ContainerImages({ store, views, backoff: { initialMs: 10, maxMs: 10 } });
    const messages: string[] = [];
    let reads = 0;
    await images.prepare({
      sandboxUid: 'uid-1',
      container: 'main',
      image: 'reg.example/p:1',
      pullSecrets: () => {
        reads++;
        // The Secret appears after the first refusal.
        return Promise.resolve(
          reads === 1
            ? []
            : [{ name: 'cred', data: { auths: { 'reg.example': { auth: 'dTpw' } } } }],
        );
      },
      signal: new AbortController().signal,
      onWaiting: (_r, m) => messages.push(m),
      onEvent: () => {},
    });
    expect(messages[1]).toContain('no imagePullSecret of this sandbox has credentials');
    expect(calls.map((c) => c.secrets)).toEqual([0, 1]);
  });

  it('ErrImageNeverPull keeps its reason while waiting (no ImagePullBackOff)', async () => {
    const { store } = fakeStore([
      new ImagePullError('ErrImageNeverPull', 'NotFound', 'app:1', 'not present'),
    ]);
    const { views } = fakeViews();
    const images = new ContainerImages({ store, views, backoff: { initialMs: 10, maxMs: 10 } });
    const waiting: string[] = [];
    await images.prepare({
      sandboxUid: 'u',
      container: 'c',
      image: 'app:1',
      policy: 'Never',
      pullSecrets: () => Promise.resolve([]),
      signal: new AbortController().signal,
      onWaiting: (r) => waiting.push(r),
      onEvent: () => {},
    });
    expect(waiting).toEqual(['Pulling', 'ErrImageNeverPull', 'Pulling']);
  });

  it('cancellation ends a backoff at once; other errors are not retried', async () => {
    const { store } = fakeStore([notFound(), notFound(), notFound()]);
    const { views } = fakeViews();
    const images = new ContainerImages({
      store,
      views,
      // A day-long backoff, far past the test's timeout: only the abort can end the wait.
      backoff: { initialMs: 24 * 3600_000, maxMs: 24 * 3600_000 },
    });
    const abort = new AbortController();
    const p = images.prepare({
      sandboxUid: 'u',
      container: 'c',
      image: 'app:2',
      pullSecrets: () => Promise.resolve([]),
      signal: abort.signal,
      onWaiting: (r) => {
        if (r === 'ErrImagePull') setTimeout(() => abort.abort(new Error('deleted')), 10);
      },
      onEvent: () => {},
    });
    await expect(p).rejects.toThrow('deleted');

    const broken = fakeStore([new Error('disk full')]);
    const images2 = new ContainerImages({ store: broken.store, views });
    await expect(
      images2.prepare({
        sandboxUid: 'u',
        container: 'c',
        image: 'app:2',
        pullSecrets: () => Promise.resolve([]),
        signal: new AbortController().signal,
        onWaiting: () => {},
        onEvent: () => {},
      }),
    ).rejects.toThrow('disk full');
    expect(broken.calls).toHaveLength(1);
  });

  it('release tears the views down before dropping the leases; leftovers after a restart', async () => {
    const { store, released } = fakeStore([]);
    const { views, torn } = fakeViews(['s1', 's3']);
    const images = new ContainerImages({ store, views });
    await images.release('s9');
    expect(torn).toEqual(['s9']);
    expect(released).toEqual(['s9']);
    expect(await images.releaseAllExcept(new Set(['s1']))).toEqual(['s2', 's3']);
    expect(torn).toEqual(['s9', 's3']);
  });
});

describe('invalidImage', () => {
  const spec = (...images: (string | undefined)[]) =>
    ({
      containers: images.map((image, i) =>
        image === undefined
          ? { name: `c${i}`, rootfs: { hostPath: { path: '/srv' } } }
          : { name: `c${i}`, image },
      ),
    }) as unknown as KataSandboxSpec;

  it('names the first container whose reference cannot be parsed', () => {
    expect(
      invalidImage(spec(undefined, 'busybox:1.36', 'reg:5000/a/b@sha256:' + 'f'.repeat(64))),
    ).toBeUndefined();
    expect(invalidImage(spec(undefined, 'busybox', 'library/Case'))).toEqual({
      field: 'spec.containers[2].image',
      reason: 'InvalidImageName',
      message: expect.stringContaining('spec.containers[2].image: ') as unknown as string,
    });
    expect(invalidImage(spec('busybox@sha256:short'))?.field).toBe('spec.containers[0].image');
  });

  it('refuses a registry the node does not allow, naming the field (issue 14 row 16)', () => {
    const allowed = ['127.0.0.1:5000', '*.corp.example'];
    expect(
      invalidImage(spec(undefined, '127.0.0.1:5000/a/b:1', 'eu.corp.example/x'), allowed),
    ).toBeUndefined();
    expect(invalidImage(spec('127.0.0.1:5000/a', 'evil.example:443/x'), allowed)).toEqual({
      field: 'spec.containers[1].image',
      reason: 'RegistryNotAllowed',
      message:
        'spec.containers[1].image: registry "evil.example:443" is not in this node\'s allowed registries (127.0.0.1:5000, *.corp.example)',
    });
    // Docker Hub's short names are docker.io's.
    expect(invalidImage(spec('busybox'), allowed)?.reason).toBe('RegistryNotAllowed');
    expect(invalidImage(spec('busybox'), ['docker.io'])).toBeUndefined();
    // No list: any registry.
    expect(invalidImage(spec('evil.example/x'))).toBeUndefined();
  });
});

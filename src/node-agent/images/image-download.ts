// One image into the cache: `skopeo copy` of exactly one manifest digest into a private OCI
// layout, `umoci unpack` into a bundle, its config (a named user resolved), size and meta.json
// written, the blobs dropped, and the bundle renamed into <images>/<algo>-<hex>/ in one step —
// an image directory is complete or absent.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { digestDirName, type ImageMeta, type ImageRecord } from './image-record.js';
import { repositoryName, type ImageReference } from './reference.js';
import type { RegistryCredential } from './registry-auth.js';
import type { RegistryTools } from './registry-tools.js';
import { diskUsage, readLayoutImage, resolvedUser } from './unpacked-image.js';

export interface DownloadPlace {
  tools: Pick<RegistryTools, 'copy' | 'unpack'>;
  /** Work dirs go here (same filesystem as imagesDir, for the final rename). */
  tmpDir: string;
  imagesDir: string;
  /** Removes a work dir (refusing while anything is mounted below it). */
  removeTree: (dir: string) => Promise<void>;
  now: () => number;
}

export async function downloadImage(
  place: DownloadPlace,
  ref: ImageReference,
  digest: string,
  cred: RegistryCredential | undefined,
  signal: AbortSignal,
): Promise<ImageRecord> {
  const work = await mkdtemp(path.join(place.tmpDir, 'pull-'));
  try {
    const layout = path.join(work, 'layout');
    const bundle = path.join(work, 'bundle');
    await place.tools.copy(ref, digest, layout, cred, signal);
    const { config, downloadedBytes } = await readLayoutImage(layout);
    await place.tools.unpack(layout, bundle, signal);
    const { user, groups } = await resolvedUser(bundle, config);
    if (user !== undefined) config.User = user;
    const bytes = await diskUsage(path.join(bundle, 'rootfs'), signal);
    const now = place.now();
    const meta: ImageMeta = {
      version: 1,
      digest,
      repository: repositoryName(ref),
      config,
      userGroups: groups,
      bytes,
      downloadedBytes,
      createdMs: now,
      lastUsedMs: now,
      refs: {},
      needsAuth: cred !== undefined,
    };
    await writeFile(path.join(bundle, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`, {
      mode: 0o600,
    });
    // The blobs are not needed once unpacked; the rootfs is what sandboxes use.
    await rm(layout, { recursive: true, force: true });
    const dir = path.join(place.imagesDir, digestDirName(digest));
    await rename(bundle, dir);
    return { ...meta, dir, rootfs: path.join(dir, 'rootfs') };
  } finally {
    await place.removeTree(work);
  }
}

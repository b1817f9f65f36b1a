// What an image is once copied and unpacked: its config and compressed size from the OCI layout,
// a named user as umoci resolved it against the image's own files, and its size on disk.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ImageConfig } from '../../agent/oci/image-config.js';
import { runCommandOk } from '../../common/run-command.js';
import { ManifestError, imageConfigFromBlob, parseManifest } from './oci-manifest.js';
import { isDigest } from './reference.js';

/** Config and compressed size of the single image in an OCI layout skopeo wrote. */
export async function readLayoutImage(
  layout: string,
): Promise<{ config: ImageConfig; downloadedBytes: number }> {
  const blob = (digest: string): Promise<Buffer> => {
    const [algo, hex] = digest.split(':');
    if (!algo || !hex || !isDigest(digest)) throw new ManifestError(`invalid digest ${digest}`);
    return readFile(path.join(layout, 'blobs', algo, hex));
  };
  const index = parseManifest(await readFile(path.join(layout, 'index.json')));
  if (index.kind !== 'index' || index.entries.length !== 1 || !index.entries[0]) {
    throw new ManifestError('the pulled layout does not hold exactly one image');
  }
  const manifest = parseManifest(await blob(index.entries[0].digest));
  if (manifest.kind !== 'manifest') throw new ManifestError('the pulled image is not a manifest');
  const config = imageConfigFromBlob(await blob(manifest.configDigest));
  return { config, downloadedBytes: manifest.layers.reduce((s, l) => s + l.size, 0) };
}

/**
 * A named image user (`User: app`) as uid:gid, with its supplementary groups, as umoci resolved
 * it against the image's own /etc/passwd and /etc/group into the bundle's config.json.
 */
export async function resolvedUser(
  bundle: string,
  config: ImageConfig,
): Promise<{ user?: string; groups: number[] }> {
  const user = config.User ?? '';
  if (user === '' || /^[0-9]+(:[0-9]+)?$/.test(user)) return { groups: [] };
  const spec = JSON.parse(await readFile(path.join(bundle, 'config.json'), 'utf8')) as {
    process?: { user?: { uid?: number; gid?: number; additionalGids?: number[] } };
  };
  const u = spec.process?.user;
  if (typeof u?.uid !== 'number' || typeof u.gid !== 'number') return { groups: [] };
  return { user: `${u.uid}:${u.gid}`, groups: (u.additionalGids ?? []).filter((g) => g !== u.gid) };
}

/** Bytes the tree uses on disk (`du`, hard links counted once). */
export async function diskUsage(dir: string, signal: AbortSignal): Promise<number> {
  const out = await runCommandOk(['du', '-s', '-B1', '-x', dir], { timeoutMs: 120_000, signal });
  const n = Number.parseInt(out.stdout.toString().split('\t')[0] ?? '', 10);
  return Number.isFinite(n) ? n : 0;
}

// One cached image on disk: <root>/images/<algo>-<hex>/ with its rootfs and meta.json, written
// atomically and never otherwise changed; and which repository a private image's proof must reach.
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ImageConfig } from '../../agent/oci/image-config.js';
import { isDigest, type ImageReference } from './reference.js';

export interface ImageMeta {
  version: 1;
  digest: string;
  repository: string;
  config: ImageConfig;
  userGroups: number[];
  bytes: number;
  downloadedBytes: number;
  createdMs: number;
  lastUsedMs: number;
  /** Resolution keys (repo:tag, repo@digest) → when they last resolved to this digest. */
  refs: Record<string, number>;
  /**
   * Pulled with credentials from `repository` (its source): another sandbox gets it only after
   * proving its own access to that repository (issue 14 row 15), whatever registry it names.
   */
  needsAuth: boolean;
  /**
   * The repository (`registry/path`) credentials reached it through, when that is not
   * `repository` (an image first pulled anonymously, later resolved with credentials elsewhere):
   * where a proof must reach.
   */
  authRepository?: string;
}

export interface ImageRecord extends ImageMeta {
  dir: string;
  rootfs: string;
}

export function digestDirName(digest: string): string {
  return digest.replace(':', '-');
}

export async function writeAtomic(file: string, content: string, mode = 0o600): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, content, { mode });
  await rename(tmp, file);
}

/** The record of the image directory `dir` (named after its digest); throws when unreadable. */
export async function readImageRecord(dir: string): Promise<ImageRecord> {
  const meta = JSON.parse(await readFile(path.join(dir, 'meta.json'), 'utf8')) as ImageMeta;
  if (
    meta.version !== 1 ||
    !isDigest(meta.digest) ||
    digestDirName(meta.digest) !== path.basename(dir)
  ) {
    throw new Error('unexpected meta.json');
  }
  return { ...meta, dir, rootfs: path.join(dir, 'rootfs') };
}

/** Writes a record's meta.json (atomically). */
export async function writeImageMeta(r: ImageRecord): Promise<void> {
  const { dir: _dir, rootfs: _rootfs, ...meta } = r;
  await writeAtomic(path.join(r.dir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
}

/** The repository a private image's proof must reach (`registry/path`). */
export function authRepositoryOf(r: ImageMeta): string {
  return r.authRepository ?? r.repository;
}

/** That repository, as a reference by digest. */
export function sourceOf(r: ImageMeta): ImageReference {
  const repo = authRepositoryOf(r);
  const slash = repo.indexOf('/');
  return { registry: repo.slice(0, slash), repository: repo.slice(slash + 1), digest: r.digest };
}

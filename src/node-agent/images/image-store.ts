// The node-wide image cache: `skopeo copy` of one manifest digest into a private OCI layout,
// `umoci unpack` into a rootfs, kept under <root>/images/<algo>-<hex>/ and never written again.
// Tags resolve to digests (remembered per reference), pulls of one reference or one digest are
// shared, sandboxes hold leases, and images nobody holds are evicted least recently used first once
// the cache is over its size limit. State survives restarts: each image's meta.json, leases.json.
// The pieces: registry-tools.ts (skopeo, umoci), digest-resolve.ts, image-download.ts,
// access-proof.ts (who may take a privately pulled image), image-record.ts (the on-disk record).
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ImageConfig } from '../../agent/oci/image-config.js';
import type { Logger } from '../../observability/logger.js';
import { mountsUnder, overlayLowerDirs, readMountInfo } from '../storage/mountinfo.js';
import { AccessProofs } from './access-proof.js';
import { resolveDigest, type ResolvedDigest } from './digest-resolve.js';
import { downloadImage } from './image-download.js';
import type { ImageMetrics } from './image-metrics.js';
import {
  type ImageRecord,
  authRepositoryOf,
  readImageRecord,
  writeAtomic,
  writeImageMeta,
} from './image-record.js';
import { chooseEvictions } from './lru.js';
import { type Platform, hostPlatform } from './oci-manifest.js';
import { type PullPolicy, decidePull, defaultPullPolicy } from './policy.js';
import { ImagePullError, pullResultLabel, toImagePullError } from './pull-errors.js';
import {
  type ImageReference,
  formatReference,
  parseImageReference,
  repositoryName,
  resolutionKey,
} from './reference.js';
import { type PullSecret, type RegistryCredential, credentialsFor } from './registry-auth.js';
import { RegistryTools, type ToolCounts } from './registry-tools.js';
import { SAFE_UID } from './rootfs-view.js';
import { SharedOps } from './shared-ops.js';

export { digestDirName } from './image-record.js';
export type { ToolCounts } from './registry-tools.js';

export interface ImageStoreOptions {
  /** Absolute; the store owns everything below it (0700). */
  root: string;
  /** Cache size limit (unpacked bytes); images held by no sandbox are evicted above it. */
  maxBytes: number;
  /** host[:port] of registries reached over plain HTTP or unverified TLS. */
  insecureRegistries?: readonly string[];
  platform?: Platform;
  skopeoBinary?: string;
  umociBinary?: string;
  inspectTimeoutMs?: number;
  copyTimeoutMs?: number;
  unpackTimeoutMs?: number;
  metrics?: ImageMetrics;
  logger?: Logger;
  now?: () => number;
}

export interface EnsureImageRequest {
  /** The image as the container wrote it. */
  image: string;
  /** Default: Kubernetes' (Always for :latest or no tag, IfNotPresent otherwise). */
  policy?: PullPolicy;
  /** Parsed `.dockerconfigjson` of the sandbox's imagePullSecrets, in the spec's order. */
  pullSecrets?: readonly PullSecret[];
  /** The lease holder (the sandbox's uid); the image is kept until released. */
  sandboxUid: string;
  signal?: AbortSignal;
  /** Called once, before the registry is contacted (Waiting/Pulling, the "Pulling" Event). */
  onPulling?: () => void;
}

export type EnsureOutcome =
  /** Served from the cache; the registry was not contacted. */
  | 'cache-hit'
  /** The registry was asked (policy Always, or a cached private image checked for access) and the cache already had that digest. */
  | 'up-to-date'
  /** Downloaded and unpacked. */
  | 'pulled';

export interface ImageHandle {
  image: string;
  /** Normalized reference, e.g. docker.io/library/busybox:1.36. */
  reference: string;
  /** Manifest digest of this platform's image, as the registry serves it. */
  digest: string;
  /** The unpacked root filesystem: read-only by contract, never mount it writable. */
  rootfs: string;
  /** Entrypoint, Cmd, Env, WorkingDir and User; a named User is resolved to uid:gid. */
  config: ImageConfig;
  /** The image user's supplementary groups from the image's /etc/group (named users only). */
  userGroups: number[];
  /** Unpacked size on disk. */
  bytes: number;
  /** Compressed layer bytes downloaded by this call (0 unless pulled). */
  downloadedBytes: number;
  outcome: EnsureOutcome;
  /** Wall time of this call, waiting for a shared pull included. */
  durationMs: number;
}

export interface CachedImage {
  digest: string;
  rootfs: string;
  bytes: number;
  lastUsedMs: number;
  references: string[];
  holders: string[];
}

interface Fetched {
  record: ImageRecord;
  downloaded: boolean;
}

export class ImageStore {
  readonly root: string;
  readonly imagesDir: string;
  private readonly tmpDir: string;
  private readonly trashDir: string;
  private readonly policyFile: string;
  private readonly images = new Map<string, ImageRecord>();
  /** digest → sandbox uids holding it. */
  private readonly leases = new Map<string, Set<string>>();
  /** Digests a running ensureImage is about to hand out: never evicted meanwhile. */
  private readonly pins = new Map<string, number>();
  private readonly resolves = new SharedOps<string, ResolvedDigest>();
  private readonly fetches = new SharedOps<string, Fetched>();
  private readonly tools: RegistryTools;
  private readonly proofs: AccessProofs;
  private writes: Promise<void> = Promise.resolve();

  private constructor(private readonly opts: ImageStoreOptions) {
    if (!path.isAbsolute(opts.root))
      throw new Error(`image store root ${opts.root} is not absolute`);
    this.root = path.resolve(opts.root);
    this.imagesDir = path.join(this.root, 'images');
    this.tmpDir = path.join(this.root, 'tmp');
    this.trashDir = path.join(this.root, 'trash');
    this.policyFile = path.join(this.root, 'policy.json');
    this.tools = new RegistryTools({
      policyFile: this.policyFile,
      tmpDir: this.tmpDir,
      insecureRegistries: opts.insecureRegistries,
      skopeoBinary: opts.skopeoBinary,
      umociBinary: opts.umociBinary,
      inspectTimeoutMs: opts.inspectTimeoutMs,
      copyTimeoutMs: opts.copyTimeoutMs,
      unpackTimeoutMs: opts.unpackTimeoutMs,
    });
    this.proofs = new AccessProofs(this.tools, {
      tmpDir: this.tmpDir,
      removeTree: (dir) => this.removeTree(dir),
    });
  }

  /** Everything this store spawned, counted (tests and benchmarks read it). */
  get toolRuns(): ToolCounts {
    return this.tools.runs;
  }

  /** Opens (or creates) the store: leftovers of interrupted pulls and evictions are removed. */
  static async open(opts: ImageStoreOptions): Promise<ImageStore> {
    const store = new ImageStore(opts);
    await store.load();
    return store;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private async load(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await chmod(this.root, 0o700);
    for (const d of [this.imagesDir, this.tmpDir, this.trashDir]) {
      await mkdir(d, { recursive: true, mode: 0o700 });
    }
    // Interrupted pulls and evictions: nothing in there is mounted (checked) or referenced.
    for (const d of [this.tmpDir, this.trashDir]) {
      for (const name of await readdir(d)) await this.removeTree(path.join(d, name));
    }
    // skopeo insists on a trust policy; pulls are pinned to the digest they resolved.
    await writeAtomic(
      this.policyFile,
      `${JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] })}\n`,
      0o644,
    );
    for (const name of await readdir(this.imagesDir)) {
      const dir = path.join(this.imagesDir, name);
      try {
        const r = await readImageRecord(dir);
        this.images.set(r.digest, r);
      } catch (err) {
        this.opts.logger?.warn({ err, dir }, 'image cache: dropping an unreadable entry');
        await this.discard(dir);
      }
    }
    try {
      const saved = JSON.parse(
        await readFile(path.join(this.root, 'leases.json'), 'utf8'),
      ) as Record<string, string[]>;
      for (const [uid, digests] of Object.entries(saved)) {
        for (const d of digests) if (this.images.has(d)) this.addLease(d, uid);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.opts.logger?.warn(
          { err },
          'image cache: leases.json unreadable; starting without leases',
        );
      }
    }
    this.publish();
  }

  // ---- queries ------------------------------------------------------------------------------

  list(): CachedImage[] {
    return [...this.images.values()].map((r) => ({
      digest: r.digest,
      rootfs: r.rootfs,
      bytes: r.bytes,
      lastUsedMs: r.lastUsedMs,
      references: Object.keys(r.refs).sort(),
      holders: [...(this.leases.get(r.digest) ?? [])].sort(),
    }));
  }

  totalBytes(): number {
    let total = 0;
    for (const r of this.images.values()) total += r.bytes;
    return total;
  }

  /** sandbox uid → digests it holds. */
  holders(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [digest, uids] of this.leases) {
      for (const uid of uids) out.set(uid, [...(out.get(uid) ?? []), digest]);
    }
    return out;
  }

  /** The digest the cache holds for this reference (a tag's last resolution). */
  cachedDigest(ref: ImageReference): string | undefined {
    if (ref.digest !== undefined && this.images.has(ref.digest)) return ref.digest;
    const key = resolutionKey(ref);
    let best: { digest: string; at: number } | undefined;
    for (const r of this.images.values()) {
      const at = r.refs[key];
      if (at !== undefined && (!best || at > best.at)) best = { digest: r.digest, at };
    }
    return best?.digest;
  }

  // ---- leases -------------------------------------------------------------------------------

  private addLease(digest: string, uid: string): void {
    let set = this.leases.get(digest);
    if (!set) this.leases.set(digest, (set = new Set()));
    set.add(uid);
  }

  /** Records that `uid` uses the cached image `digest` (ensureImage already does). */
  async acquire(digest: string, uid: string): Promise<void> {
    if (!SAFE_UID.test(uid)) throw new Error(`invalid sandbox uid ${JSON.stringify(uid)}`);
    const r = this.images.get(digest);
    if (!r) throw new Error(`image ${digest} is not in the cache`);
    this.addLease(digest, uid);
    r.lastUsedMs = this.now();
    await this.persist(r);
  }

  /** Drops `uid`'s lease on `digest` (every lease of `uid` without a digest). Idempotent. */
  async release(uid: string, digest?: string): Promise<void> {
    const touched: ImageRecord[] = [];
    for (const [d, set] of this.leases) {
      if (digest !== undefined && d !== digest) continue;
      if (!set.delete(uid)) continue;
      if (set.size === 0) this.leases.delete(d);
      const r = this.images.get(d);
      if (r) {
        r.lastUsedMs = this.now();
        touched.push(r);
      }
    }
    for (const r of touched) await this.persist(r);
    if (touched.length === 0) await this.persistLeases();
    await this.evict();
  }

  /** Releases the leases of every sandbox not in `alive` (after a restart). */
  async releaseAllExcept(alive: ReadonlySet<string>): Promise<string[]> {
    const gone = [...this.holders().keys()].filter((uid) => !alive.has(uid));
    for (const uid of gone) await this.release(uid);
    return gone;
  }

  // ---- ensureImage --------------------------------------------------------------------------

  /**
   * The image for one container of one sandbox: resolved by the pull policy, pulled when needed,
   * leased to `sandboxUid`. Throws InvalidImageNameError or ImagePullError (reason
   * ErrImagePull/ErrImageNeverPull, with the registry's message).
   */
  async ensureImage(req: EnsureImageRequest): Promise<ImageHandle> {
    const started = this.now();
    if (!SAFE_UID.test(req.sandboxUid)) {
      throw new Error(`invalid sandbox uid ${JSON.stringify(req.sandboxUid)}`);
    }
    const ref = parseImageReference(req.image);
    const policy = req.policy ?? defaultPullPolicy(ref);
    const secrets = req.pullSecrets ?? [];
    const creds = credentialsFor(ref, secrets);
    const cached = this.cachedDigest(ref);
    const decision = decidePull(policy, ref, cached);
    if (decision.action === 'never-pull-missing') {
      throw new ImagePullError('ErrImageNeverPull', 'NotFound', req.image, 'not present');
    }
    let digest: string;
    let cred: RegistryCredential | undefined;
    let contacted = false;
    let proved = false;
    if (
      decision.action === 'use-cached' &&
      !this.proofs.needsProof(this.images.get(decision.digest), secrets)
    ) {
      digest = decision.digest;
    } else {
      req.onPulling?.();
      contacted = true;
      try {
        const resolved = await this.resolve(ref, creds, req.signal);
        digest = resolved.digest;
        cred = resolved.cred;
      } catch (err) {
        throw this.pullFailed(req.image, err, req.signal);
      }
    }
    this.pin(digest);
    try {
      let fetched: Fetched;
      try {
        fetched = await this.fetch(ref, digest, cred, req.signal);
      } catch (err) {
        throw this.pullFailed(req.image, err, req.signal);
      }
      const r = fetched.record;
      const fromSource = contacted && repositoryName(ref) === authRepositoryOf(r);
      if (
        !fetched.downloaded &&
        this.proofs.needsProof(this.images.get(digest), secrets) &&
        !fromSource
      ) {
        // Served from the cache, pulled privately by someone else, and this request's registry
        // answer says nothing about the source repository: prove access there first.
        if (!contacted) req.onPulling?.();
        proved = true;
        try {
          await this.proofs.prove(req.image, r, ref, secrets, req.signal);
        } catch (err) {
          throw this.pullFailed(req.image, err, req.signal);
        }
      } else if (cred && (fetched.downloaded || fromSource)) this.proofs.markVerified(r, cred);
      else if (cred && !r.needsAuth) {
        // A public image reached with credentials: private from now on (as before), proven at
        // the repository the credentials were used on.
        r.authRepository = repositoryName(ref);
        this.proofs.markVerified(r, cred);
      }
      await this.rememberRef(r, ref, contacted);
      this.addLease(digest, req.sandboxUid);
      r.lastUsedMs = this.now();
      await this.persist(r);
      const durationMs = this.now() - started;
      const outcome: EnsureOutcome = fetched.downloaded
        ? 'pulled'
        : contacted || proved
          ? 'up-to-date'
          : 'cache-hit';
      if (contacted) {
        this.opts.metrics?.pulls.inc({ result: 'success' });
        this.opts.metrics?.pullSeconds.observe(durationMs / 1000);
      }
      if (!fetched.downloaded) this.opts.metrics?.cacheHits.inc();
      return {
        image: req.image,
        reference: formatReference(ref),
        digest,
        rootfs: r.rootfs,
        config: r.config,
        userGroups: r.userGroups,
        bytes: r.bytes,
        downloadedBytes: fetched.downloaded ? r.downloadedBytes : 0,
        outcome,
        durationMs,
      };
    } finally {
      this.unpin(digest);
      await this.evict();
    }
  }

  private pullFailed(image: string, err: unknown, signal?: AbortSignal): Error {
    const e = toImagePullError(image, err, signal);
    if (e instanceof ImagePullError) {
      this.opts.metrics?.pulls.inc({ result: pullResultLabel(e.kind) });
    }
    return e;
  }

  private pin(digest: string): void {
    this.pins.set(digest, (this.pins.get(digest) ?? 0) + 1);
  }

  private unpin(digest: string): void {
    const n = (this.pins.get(digest) ?? 1) - 1;
    if (n <= 0) this.pins.delete(digest);
    else this.pins.set(digest, n);
  }

  private async rememberRef(
    r: ImageRecord,
    ref: ImageReference,
    contacted: boolean,
  ): Promise<void> {
    const key = resolutionKey(ref);
    if (contacted || r.refs[key] === undefined) r.refs[key] = this.now();
    // A tag now resolving elsewhere is dropped from the images it named before.
    if (contacted && ref.digest === undefined) {
      for (const other of this.images.values()) {
        if (other !== r && other.refs[key] !== undefined) {
          delete other.refs[key];
          await this.persist(other);
        }
      }
    }
  }

  // ---- registry -----------------------------------------------------------------------------

  /** Tag (or index digest) → this platform's manifest digest, asking the registry once per key. */
  private resolve(
    ref: ImageReference,
    creds: readonly RegistryCredential[],
    signal?: AbortSignal,
  ): Promise<ResolvedDigest> {
    const who = creds.map((c) => this.proofs.fingerprint(ref.registry, c)).join(',');
    const key = `${resolutionKey(ref)}|${who}`;
    const platform = this.opts.platform ?? hostPlatform();
    return this.resolves.run(
      key,
      (opSignal) => resolveDigest(this.tools, ref, creds, platform, opSignal),
      signal,
    );
  }

  /** The image `digest` in the cache: there already, or copied and unpacked once (shared). */
  private async fetch(
    ref: ImageReference,
    digest: string,
    cred: RegistryCredential | undefined,
    signal?: AbortSignal,
  ): Promise<Fetched> {
    const have = this.images.get(digest);
    if (have) return { record: have, downloaded: false };
    return this.fetches.run(
      digest,
      async (opSignal) => {
        const again = this.images.get(digest);
        if (again) return { record: again, downloaded: false };
        return { record: await this.download(ref, digest, cred, opSignal), downloaded: true };
      },
      signal,
    );
  }

  private async download(
    ref: ImageReference,
    digest: string,
    cred: RegistryCredential | undefined,
    signal: AbortSignal,
  ): Promise<ImageRecord> {
    const place = {
      tools: this.tools,
      tmpDir: this.tmpDir,
      imagesDir: this.imagesDir,
      removeTree: (dir: string) => this.removeTree(dir),
      now: () => this.now(),
    };
    const record = await downloadImage(place, ref, digest, cred, signal);
    this.images.set(digest, record);
    this.publish();
    this.opts.logger?.info(
      {
        digest,
        image: formatReference(ref),
        bytes: record.bytes,
        downloadedBytes: record.downloadedBytes,
      },
      'image pulled and unpacked',
    );
    return record;
  }

  // ---- persistence and eviction -------------------------------------------------------------

  private publish(): void {
    this.opts.metrics?.setCache(this.totalBytes(), this.images.size);
  }

  private persist(r: ImageRecord): Promise<void> {
    return this.queue(async () => {
      if (this.images.get(r.digest) !== r) return;
      await writeImageMeta(r);
      await this.writeLeases();
    });
  }

  private persistLeases(): Promise<void> {
    return this.queue(() => this.writeLeases());
  }

  private async writeLeases(): Promise<void> {
    const out: Record<string, string[]> = {};
    for (const [uid, digests] of this.holders()) out[uid] = digests.sort();
    await writeAtomic(path.join(this.root, 'leases.json'), `${JSON.stringify(out)}\n`);
  }

  private queue(fn: () => Promise<void>): Promise<void> {
    const next = this.writes.then(fn);
    this.writes = next.catch(() => {});
    return next;
  }

  /** Evicts images nobody holds, least recently used first, until the cache fits its limit. */
  async evict(): Promise<string[]> {
    if (this.totalBytes() <= this.opts.maxBytes) return [];
    const lowers = new Set(overlayLowerDirs(await readMountInfo()));
    const fetching = new Set(this.fetches.inFlight());
    const usage = [...this.images.values()].map((r) => ({
      digest: r.digest,
      bytes: r.bytes,
      lastUsedMs: r.lastUsedMs,
      inUse:
        (this.leases.get(r.digest)?.size ?? 0) > 0 ||
        this.pins.has(r.digest) ||
        fetching.has(r.digest) ||
        lowers.has(r.rootfs),
    }));
    const chosen = chooseEvictions(usage, this.opts.maxBytes);
    const records = chosen.flatMap((d) => {
      const r = this.images.get(d);
      if (!r) return [];
      this.images.delete(d);
      this.proofs.forget(d);
      return [r];
    });
    this.publish();
    for (const r of records) {
      this.opts.logger?.info({ digest: r.digest, bytes: r.bytes }, 'image evicted from the cache');
      await this.discard(r.dir);
    }
    return chosen;
  }

  /** Moves a directory to the trash (atomically out of sight), then deletes it. */
  private async discard(dir: string): Promise<void> {
    const target = path.join(
      this.trashDir,
      `${path.basename(dir)}-${randomBytes(4).toString('hex')}`,
    );
    await rename(dir, target).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await this.removeTree(target);
  }

  /** rm -rf, refused while anything is mounted below (never delete through a mount). */
  private async removeTree(dir: string): Promise<void> {
    const mounted = mountsUnder(await readMountInfo(), dir);
    if (mounted.length > 0) {
      throw new Error(
        `refusing to remove ${dir}: ${mounted.map((m) => m.mountPoint).join(', ')} mounted`,
      );
    }
    await rm(dir, { recursive: true, force: true });
  }
}

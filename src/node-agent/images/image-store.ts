// The node-wide image cache: `skopeo copy` of one manifest digest into a private OCI layout,
// `umoci unpack` into a rootfs, kept under <root>/images/<algo>-<hex>/ and never written again.
// Tags resolve to digests (remembered per reference), pulls of one reference or one digest are
// shared, sandboxes hold leases, and images nobody holds are evicted least recently used first once
// the cache is over its size limit. State survives restarts: each image's meta.json, leases.json.
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ImageConfig } from '../../agent/oci/image-config.js';
import type { Logger } from '../../observability/logger.js';
import type { ImageMetrics } from './image-metrics.js';
import { chooseEvictions } from './lru.js';
import { mountsUnder, overlayLowerDirs, readMountInfo } from '../storage/mountinfo.js';
import {
  ManifestError,
  type Platform,
  hostPlatform,
  imageConfigFromBlob,
  parseManifest,
  selectPlatform,
  sha256Digest,
} from './oci-manifest.js';
import { type PullPolicy, decidePull, defaultPullPolicy } from './policy.js';
import {
  ImagePullError,
  type PullErrorKind,
  classifyPullFailure,
  pullResultLabel,
  toolMessage,
} from './pull-errors.js';
import {
  type ImageReference,
  formatReference,
  isDigest,
  parseImageReference,
  repositoryName,
  resolutionKey,
} from './reference.js';
import {
  type PullSecret,
  type RegistryCredential,
  authFileContent,
  credentialsFor,
} from './registry-auth.js';
import { CommandError, runCommandOk } from '../../common/run-command.js';
import { SAFE_UID } from './rootfs-view.js';
import { SharedOps } from './shared-ops.js';
import {
  type RegistryAccess,
  isInsecureRegistry,
  skopeoCopyArgs,
  skopeoInspectRawArgs,
  umociUnpackArgs,
} from './tool-args.js';

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

interface ImageMeta {
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

interface ImageRecord extends ImageMeta {
  dir: string;
  rootfs: string;
}

interface Resolved {
  digest: string;
  /** The credential that worked (undefined: anonymous). */
  cred?: RegistryCredential;
}

interface Fetched {
  record: ImageRecord;
  downloaded: boolean;
}

/** Everything this store spawned, counted (tests and benchmarks read it). */
export interface ToolCounts {
  inspect: number;
  copy: number;
  unpack: number;
}

const LAYOUT_TAG = 'image';
const SKOPEO_BINARY = 'skopeo';
const UMOCI_BINARY = 'umoci';

export function digestDirName(digest: string): string {
  return digest.replace(':', '-');
}

async function writeAtomic(file: string, content: string, mode = 0o600): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, content, { mode });
  await rename(tmp, file);
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
  private readonly resolves = new SharedOps<string, Resolved>();
  private readonly fetches = new SharedOps<string, Fetched>();
  /** Credential fingerprints proven to reach a private image since start (memory only). */
  private readonly verified = new Map<string, Set<string>>();
  private readonly salt = randomBytes(16);
  private writes: Promise<void> = Promise.resolve();
  readonly toolRuns: ToolCounts = { inspect: 0, copy: 0, unpack: 0 };

  private constructor(private readonly opts: ImageStoreOptions) {
    if (!path.isAbsolute(opts.root))
      throw new Error(`image store root ${opts.root} is not absolute`);
    this.root = path.resolve(opts.root);
    this.imagesDir = path.join(this.root, 'images');
    this.tmpDir = path.join(this.root, 'tmp');
    this.trashDir = path.join(this.root, 'trash');
    this.policyFile = path.join(this.root, 'policy.json');
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
        const meta = JSON.parse(await readFile(path.join(dir, 'meta.json'), 'utf8')) as ImageMeta;
        if (meta.version !== 1 || !isDigest(meta.digest) || digestDirName(meta.digest) !== name) {
          throw new Error('unexpected meta.json');
        }
        this.images.set(meta.digest, { ...meta, dir, rootfs: path.join(dir, 'rootfs') });
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
    if (decision.action === 'use-cached' && !this.needsProof(decision.digest, secrets)) {
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
      if (!fetched.downloaded && this.needsProof(digest, secrets) && !fromSource) {
        // Served from the cache, pulled privately by someone else, and this request's registry
        // answer says nothing about the source repository: prove access there first.
        if (!contacted) req.onPulling?.();
        proved = true;
        try {
          await this.proveAccess(req.image, r, ref, secrets, req.signal);
        } catch (err) {
          throw this.pullFailed(req.image, err, req.signal);
        }
      } else if (cred && (fetched.downloaded || fromSource)) this.markVerified(r, cred);
      else if (cred && !r.needsAuth) {
        // A public image reached with credentials: private from now on (as before), proven at
        // the repository the credentials were used on.
        r.authRepository = repositoryName(ref);
        this.markVerified(r, cred);
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
    let e: Error;
    if (err instanceof ImagePullError) e = err;
    else if (signal?.aborted) {
      const why = signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
      e = new ImagePullError('ErrImagePull', 'Canceled', image, `the pull was cancelled: ${why}`);
    } else if (err instanceof CommandError) {
      const detail = toolMessage(err.stderr) || err.message;
      const kind: PullErrorKind = err.aborted
        ? 'Canceled'
        : err.timedOut
          ? 'Timeout'
          : classifyPullFailure(detail);
      e = new ImagePullError(
        'ErrImagePull',
        kind,
        image,
        err.timedOut ? `${detail} (timed out)` : detail,
      );
    } else if (err instanceof ManifestError) {
      e = new ImagePullError('ErrImagePull', 'Other', image, err.message);
    } else if (err instanceof Error && err.name === 'AbortError') {
      e = new ImagePullError('ErrImagePull', 'Canceled', image, 'the pull was cancelled');
    } else {
      e = err instanceof Error ? err : new Error(String(err));
    }
    if (e instanceof ImagePullError) {
      this.opts.metrics?.pulls.inc({ result: pullResultLabel(e.kind) });
    }
    return e;
  }

  /** A salted hash of a credential for one registry or repository (kept in memory only). */
  private fingerprint(where: string, cred: RegistryCredential): string {
    return createHash('sha256')
      .update(this.salt)
      .update(`${where}\0${cred.username}\0${cred.password}\0${cred.identityToken ?? ''}`)
      .digest('hex');
  }

  /**
   * A cached image pulled with credentials is handed out without a registry round trip only to a
   * caller whose credential for the image's source repository (not the one the caller names)
   * already proved access there (Kubernetes' "ensure secret pulled images").
   */
  private needsProof(digest: string, secrets: readonly PullSecret[]): boolean {
    const r = this.images.get(digest);
    if (!r?.needsAuth) return false;
    const ok = this.verified.get(digest);
    const creds = credentialsFor(sourceOf(r), secrets);
    return !creds.some((c) => ok?.has(this.fingerprint(authRepositoryOf(r), c)));
  }

  private markVerified(r: ImageRecord, cred: RegistryCredential): void {
    let set = this.verified.get(r.digest);
    if (!set) this.verified.set(r.digest, (set = new Set()));
    set.add(this.fingerprint(authRepositoryOf(r), cred));
    if (!r.needsAuth) r.needsAuth = true;
  }

  /**
   * Access to a privately pulled image, proven by the caller: its manifest fetched by digest from
   * the source repository with the caller's own credential for it (each in turn; anonymously
   * when none matches). Failing that, when the caller named another repository, a full copy of
   * the digest from there (skopeo verifies every blob; the copy is then dropped): holding the
   * content elsewhere is proof too. A registry that merely names the digest (an index pointing
   * at it) proves nothing. Throws the last refusal.
   */
  private async proveAccess(
    image: string,
    r: ImageRecord,
    named: ImageReference,
    secrets: readonly PullSecret[],
    signal?: AbortSignal,
  ): Promise<void> {
    const opSignal = signal ?? new AbortController().signal;
    const source = sourceOf(r);
    const creds = credentialsFor(source, secrets);
    let refusal: unknown;
    for (const cred of creds.length > 0 ? creds : [undefined]) {
      try {
        await this.withAuth(source, cred, async (authFile) => {
          this.toolRuns.inspect++;
          await this.skopeo(
            skopeoInspectRawArgs(source, this.access(source, authFile)),
            this.opts.inspectTimeoutMs ?? 60_000,
            opSignal,
          );
        });
        if (cred) this.markVerified(r, cred);
        return;
      } catch (err) {
        if (opSignal.aborted) throw err;
        refusal = err;
      }
    }
    if (repositoryName(named) !== authRepositoryOf(r)) {
      const namedCreds = credentialsFor(named, secrets);
      for (const cred of namedCreds.length > 0 ? namedCreds : [undefined]) {
        const work = await mkdtemp(path.join(this.tmpDir, 'proof-'));
        try {
          await this.withAuth(named, cred, async (authFile) => {
            this.toolRuns.copy++;
            await this.skopeo(
              skopeoCopyArgs(named, r.digest, path.join(work, 'layout'), LAYOUT_TAG, {
                ...this.access(named, authFile),
              }),
              this.opts.copyTimeoutMs ?? 15 * 60_000,
              opSignal,
            );
          });
          return;
        } catch (err) {
          if (opSignal.aborted) throw err;
        } finally {
          await this.removeTree(work);
        }
      }
    }
    const detail =
      refusal instanceof CommandError
        ? toolMessage(refusal.stderr) || refusal.message
        : refusal instanceof Error
          ? refusal.message
          : String(refusal);
    const kind = refusal instanceof CommandError ? classifyPullFailure(detail) : 'Other';
    throw new ImagePullError(
      'ErrImagePull',
      kind === 'NotFound' || kind === 'Other' ? 'Unauthorized' : kind,
      image,
      `this node's copy of ${r.digest} was pulled with credentials from ${authRepositoryOf(r)}, and this sandbox's imagePullSecrets did not prove access there: ${detail}`,
    );
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

  private access(ref: ImageReference, authFile?: string): RegistryAccess {
    return {
      insecure: isInsecureRegistry(ref.registry, this.opts.insecureRegistries ?? []),
      policyFile: this.policyFile,
      tmpDir: this.tmpDir,
      ...(authFile && { authFile }),
    };
  }

  /** Runs `fn` with an auth file for `cred` (0600, in a private temp dir, removed after). */
  private async withAuth<T>(
    ref: ImageReference,
    cred: RegistryCredential | undefined,
    fn: (authFile: string | undefined) => Promise<T>,
  ): Promise<T> {
    if (!cred) return fn(undefined);
    const dir = await mkdtemp(path.join(this.tmpDir, 'auth-'));
    const file = path.join(dir, 'auth.json');
    try {
      await writeFile(file, authFileContent(ref, cred), { mode: 0o600 });
      return await fn(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private skopeo(args: string[], timeoutMs: number, signal: AbortSignal) {
    return runCommandOk([this.opts.skopeoBinary ?? SKOPEO_BINARY, ...args], {
      timeoutMs,
      signal,
      env: { ...process.env, TMPDIR: this.tmpDir },
    });
  }

  /** Tag (or index digest) → this platform's manifest digest, asking the registry once per key. */
  private resolve(
    ref: ImageReference,
    creds: readonly RegistryCredential[],
    signal?: AbortSignal,
  ): Promise<Resolved> {
    const who = creds.map((c) => this.fingerprint(ref.registry, c)).join(',');
    const key = `${resolutionKey(ref)}|${who}`;
    return this.resolves.run(
      key,
      async (opSignal) => {
        // Anonymous when no Secret matches; otherwise each matching credential in turn, the
        // next only after the registry refused the previous one.
        const candidates: (RegistryCredential | undefined)[] =
          creds.length > 0 ? [...creds] : [undefined];
        let lastErr: unknown;
        for (const cred of candidates) {
          try {
            const manifest = await this.withAuth(ref, cred, async (authFile) => {
              this.toolRuns.inspect++;
              const out = await this.skopeo(
                skopeoInspectRawArgs(ref, this.access(ref, authFile)),
                this.opts.inspectTimeoutMs ?? 60_000,
                opSignal,
              );
              return out.stdout;
            });
            const parsed = parseManifest(manifest);
            let digest = sha256Digest(manifest);
            if (
              ref.digest !== undefined &&
              ref.digest.startsWith('sha256:') &&
              digest !== ref.digest
            ) {
              throw new ManifestError(
                `the registry served a manifest of digest ${digest} for ${ref.digest}`,
              );
            }
            if (parsed.kind === 'index') {
              digest = selectPlatform(parsed.entries, this.opts.platform ?? hostPlatform());
              if (!isDigest(digest))
                throw new ManifestError(`invalid digest ${digest} in the image index`);
            }
            return { digest, ...(cred && { cred }) };
          } catch (err) {
            lastErr = err;
            const unauthorized =
              err instanceof CommandError &&
              !err.aborted &&
              classifyPullFailure(toolMessage(err.stderr)) === 'Unauthorized';
            if (!unauthorized) throw err;
          }
        }
        throw lastErr;
      },
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
    const work = await mkdtemp(path.join(this.tmpDir, 'pull-'));
    try {
      const layout = path.join(work, 'layout');
      const bundle = path.join(work, 'bundle');
      await this.withAuth(ref, cred, async (authFile) => {
        this.toolRuns.copy++;
        await this.skopeo(
          skopeoCopyArgs(ref, digest, layout, LAYOUT_TAG, this.access(ref, authFile)),
          this.opts.copyTimeoutMs ?? 15 * 60_000,
          signal,
        );
      });
      const { config, downloadedBytes } = await readLayoutImage(layout);
      this.toolRuns.unpack++;
      await runCommandOk(
        [this.opts.umociBinary ?? UMOCI_BINARY, ...umociUnpackArgs(layout, LAYOUT_TAG, bundle)],
        {
          timeoutMs: this.opts.unpackTimeoutMs ?? 10 * 60_000,
          signal,
        },
      );
      const { user, groups } = await resolvedUser(bundle, config);
      if (user !== undefined) config.User = user;
      const bytes = await diskUsage(path.join(bundle, 'rootfs'), signal);
      const now = this.now();
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
      const dir = path.join(this.imagesDir, digestDirName(digest));
      await rename(bundle, dir);
      const record: ImageRecord = { ...meta, dir, rootfs: path.join(dir, 'rootfs') };
      this.images.set(digest, record);
      this.publish();
      this.opts.logger?.info(
        { digest, image: formatReference(ref), bytes, downloadedBytes },
        'image pulled and unpacked',
      );
      return record;
    } finally {
      await this.removeTree(work);
    }
  }

  // ---- persistence and eviction -------------------------------------------------------------

  private publish(): void {
    this.opts.metrics?.setCache(this.totalBytes(), this.images.size);
  }

  private persist(r: ImageRecord): Promise<void> {
    const { dir: _dir, rootfs: _rootfs, ...meta } = r;
    return this.queue(async () => {
      if (this.images.get(r.digest) !== r) return;
      await writeAtomic(path.join(r.dir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
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
      this.verified.delete(d);
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

/** The repository a private image's proof must reach (`registry/path`). */
function authRepositoryOf(r: ImageMeta): string {
  return r.authRepository ?? r.repository;
}

/** That repository, as a reference by digest. */
function sourceOf(r: ImageMeta): ImageReference {
  const repo = authRepositoryOf(r);
  const slash = repo.indexOf('/');
  return { registry: repo.slice(0, slash), repository: repo.slice(slash + 1), digest: r.digest };
}

/** Config and compressed size of the single image in an OCI layout skopeo wrote. */
async function readLayoutImage(
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
async function resolvedUser(
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
async function diskUsage(dir: string, signal: AbortSignal): Promise<number> {
  const out = await runCommandOk(['du', '-s', '-B1', '-x', dir], { timeoutMs: 120_000, signal });
  const n = Number.parseInt(out.stdout.toString().split('\t')[0] ?? '', 10);
  return Number.isFinite(n) ? n : 0;
}

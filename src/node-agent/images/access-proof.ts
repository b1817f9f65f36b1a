// Who may take a privately pulled image from the cache: a cached image pulled with credentials is
// handed out without a registry round trip only to a caller whose credential for the image's
// source repository (not the one the caller names) already proved access there (Kubernetes'
// "ensure secret pulled images"). Proofs are salted credential fingerprints, kept in memory only.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import path from 'node:path';
import { CommandError } from '../../common/run-command.js';
import { authRepositoryOf, sourceOf, type ImageRecord } from './image-record.js';
import { ImagePullError, classifyPullFailure, toolMessage } from './pull-errors.js';
import { repositoryName, type ImageReference } from './reference.js';
import { credentialsFor, type PullSecret, type RegistryCredential } from './registry-auth.js';
import type { RegistryTools } from './registry-tools.js';

export class AccessProofs {
  /** digest → fingerprints of credentials proven to reach it since start. */
  private readonly verified = new Map<string, Set<string>>();
  private readonly salt = randomBytes(16);

  constructor(
    private readonly tools: RegistryTools,
    /** Where a proof by copy is written, and how it is removed after. */
    private readonly scratch: { tmpDir: string; removeTree: (dir: string) => Promise<void> },
  ) {}

  /** A salted hash of a credential for one registry or repository. */
  fingerprint(where: string, cred: RegistryCredential): string {
    return createHash('sha256')
      .update(this.salt)
      .update(`${where}\0${cred.username}\0${cred.password}\0${cred.identityToken ?? ''}`)
      .digest('hex');
  }

  /** Whether handing out `r` to a caller with `secrets` needs a proof first. */
  needsProof(r: ImageRecord | undefined, secrets: readonly PullSecret[]): boolean {
    if (!r?.needsAuth) return false;
    const ok = this.verified.get(r.digest);
    const creds = credentialsFor(sourceOf(r), secrets);
    return !creds.some((c) => ok?.has(this.fingerprint(authRepositoryOf(r), c)));
  }

  /** `cred` reached `r`'s source: the image is private from now on, and `cred` proven. */
  markVerified(r: ImageRecord, cred: RegistryCredential): void {
    let set = this.verified.get(r.digest);
    if (!set) this.verified.set(r.digest, (set = new Set()));
    set.add(this.fingerprint(authRepositoryOf(r), cred));
    if (!r.needsAuth) r.needsAuth = true;
  }

  /** The image left the cache. */
  forget(digest: string): void {
    this.verified.delete(digest);
  }

  /**
   * Access to a privately pulled image, proven by the caller: its manifest fetched by digest from
   * the source repository with the caller's own credential for it (each in turn; anonymously
   * when none matches). Failing that, when the caller named another repository, a full copy of
   * the digest from there (skopeo verifies every blob; the copy is then dropped): holding the
   * content elsewhere is proof too. A registry that merely names the digest (an index pointing
   * at it) proves nothing. Throws the last refusal.
   */
  async prove(
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
        await this.tools.inspectRaw(source, cred, opSignal);
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
        const work = await mkdtemp(path.join(this.scratch.tmpDir, 'proof-'));
        try {
          await this.tools.copy(named, r.digest, path.join(work, 'layout'), cred, opSignal);
          return;
        } catch (err) {
          if (opSignal.aborted) throw err;
        } finally {
          await this.scratch.removeTree(work);
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
}

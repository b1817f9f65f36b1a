// A reference (tag, or index digest) to the manifest digest of this platform's image, asking the
// registry: anonymously when no credential matches, otherwise each matching credential in turn,
// the next only after the registry refused the previous one.
import { CommandError } from '../../common/run-command.js';
import {
  ManifestError,
  type Platform,
  parseManifest,
  selectPlatform,
  sha256Digest,
} from './oci-manifest.js';
import { classifyPullFailure, toolMessage } from './pull-errors.js';
import { isDigest, type ImageReference } from './reference.js';
import type { RegistryCredential } from './registry-auth.js';
import type { RegistryTools } from './registry-tools.js';

export interface ResolvedDigest {
  digest: string;
  /** The credential that worked (undefined: anonymous). */
  cred?: RegistryCredential;
}

export async function resolveDigest(
  tools: Pick<RegistryTools, 'inspectRaw'>,
  ref: ImageReference,
  creds: readonly RegistryCredential[],
  platform: Platform,
  signal: AbortSignal,
): Promise<ResolvedDigest> {
  const candidates: (RegistryCredential | undefined)[] =
    creds.length > 0 ? [...creds] : [undefined];
  let lastErr: unknown;
  for (const cred of candidates) {
    try {
      const manifest = await tools.inspectRaw(ref, cred, signal);
      const parsed = parseManifest(manifest);
      let digest = sha256Digest(manifest);
      if (ref.digest !== undefined && ref.digest.startsWith('sha256:') && digest !== ref.digest) {
        throw new ManifestError(
          `the registry served a manifest of digest ${digest} for ${ref.digest}`,
        );
      }
      if (parsed.kind === 'index') {
        digest = selectPlatform(parsed.entries, platform);
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
}

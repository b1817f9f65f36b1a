// Pull failures as values: the Kubernetes reason a container shows (ErrImagePull, …), a coarse
// kind for metrics and retries, and the registry's own words taken from skopeo's error. Pure.
import { CommandError } from '../../common/run-command.js';
import { ManifestError } from './oci-manifest.js';

export type ImagePullReason = 'ErrImagePull' | 'ErrImageNeverPull' | 'InvalidImageName';

export type PullErrorKind =
  | 'NotFound'
  | 'Unauthorized'
  | 'Unreachable'
  | 'TLS'
  | 'Timeout'
  | 'TooManyRequests'
  | 'Canceled'
  | 'Other';

export class ImagePullError extends Error {
  constructor(
    readonly reason: ImagePullReason,
    readonly kind: PullErrorKind,
    /** The image as the container wrote it. */
    readonly image: string,
    /** What the registry (or the tool) said, without skopeo's wrapping. */
    readonly detail: string,
  ) {
    super(
      reason === 'ErrImageNeverPull'
        ? `Container image "${image}" is not present with pull policy of Never`
        : `Failed to pull image "${image}": ${detail}`,
    );
    this.name = 'ImagePullError';
  }
}

/** Go's %q escapes as skopeo's logrus output writes them. */
function unquoteGo(s: string): string {
  return s.replace(/\\(["\\nt])/g, (_m, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
}

/**
 * The message of skopeo's (last) `level=fatal msg="…"` line, or the last non-empty stderr line,
 * with the misleading `Error parsing image name "docker://…": ` wrapper dropped (skopeo says that
 * for any failure while opening the source, registry answers included).
 */
export function toolMessage(stderr: string): string {
  const msgs = [...stderr.matchAll(/msg="((?:[^"\\]|\\.)*)"/g)].map((m) => unquoteGo(m[1] ?? ''));
  let msg =
    msgs.pop() ??
    stderr
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .pop() ??
    '';
  msg = msg.replace(/^Error parsing image name "[^"]*": /, '');
  msg = msg.replace(/^(initializing source|Error initializing source) [^:]*: /, '');
  return msg.trim();
}

const KINDS: ReadonlyArray<[PullErrorKind, RegExp]> = [
  ['Timeout', /i\/o timeout|deadline exceeded|timed out|handshake timeout/i],
  ['TooManyRequests', /toomanyrequests|too many requests|\b429\b/i],
  [
    'Unauthorized',
    /unauthorized|authentication required|access to the resource is denied|denied:|\b401\b|\b403\b/i,
  ],
  [
    'NotFound',
    /manifest unknown|name unknown|not found|\b404\b|no image found|no manifest for|choosing image instance/i,
  ],
  ['TLS', /server gave HTTP response to HTTPS client|x509:|tls:|certificate/i],
  [
    'Unreachable',
    /connection refused|no such host|network is unreachable|no route to host|connection reset|dial tcp|EOF$/i,
  ],
];

/** The kind of a registry failure, from the tool's message. */
export function classifyPullFailure(message: string): PullErrorKind {
  for (const [kind, re] of KINDS) if (re.test(message)) return kind;
  return 'Other';
}

/** The metric label of a pull's result: `success` or the failure kind in snake case. */
export function pullResultLabel(kind: PullErrorKind | 'success'): string {
  return kind === 'success' ? 'success' : kind.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

/** Any failure of a pull as the ImagePullError a container shows (other errors pass through). */
export function toImagePullError(image: string, err: unknown, signal?: AbortSignal): Error {
  if (err instanceof ImagePullError) return err;
  if (signal?.aborted) {
    const why = signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
    return new ImagePullError('ErrImagePull', 'Canceled', image, `the pull was cancelled: ${why}`);
  }
  if (err instanceof CommandError) {
    const detail = toolMessage(err.stderr) || err.message;
    const kind: PullErrorKind = err.aborted
      ? 'Canceled'
      : err.timedOut
        ? 'Timeout'
        : classifyPullFailure(detail);
    return new ImagePullError(
      'ErrImagePull',
      kind,
      image,
      err.timedOut ? `${detail} (timed out)` : detail,
    );
  }
  if (err instanceof ManifestError) {
    return new ImagePullError('ErrImagePull', 'Other', image, err.message);
  }
  if (err instanceof Error && err.name === 'AbortError') {
    return new ImagePullError('ErrImagePull', 'Canceled', image, 'the pull was cancelled');
  }
  return err instanceof Error ? err : new Error(String(err));
}

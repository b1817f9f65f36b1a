// Reading what a registry and an OCI layout hold: manifest or index (multi-platform list), the
// platform's entry of an index, the image config's runtime part. Pure.
import { createHash } from 'node:crypto';
import type { ImageConfig } from '../../agent/oci/image-config.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ManifestLayer {
  digest: string;
  size: number;
}

export type ParsedManifest =
  | { kind: 'index'; entries: { digest: string; platform?: Platform }[] }
  | { kind: 'manifest'; configDigest: string; layers: ManifestLayer[] };

/** Thrown for content a pull cannot use; the message says why. */
export class ManifestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ManifestError';
  }
}

/** The digest of a manifest exactly as served (what a reference `@sha256:…` names). */
export function sha256Digest(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

export function parseManifest(bytes: Buffer | string): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString());
  } catch {
    throw new ManifestError('the manifest is not JSON');
  }
  if (!isObj(doc)) throw new ManifestError('the manifest is not a JSON object');
  if (doc.schemaVersion === 1) {
    throw new ManifestError('Docker schema 1 manifests are not supported; push the image again');
  }
  if (Array.isArray(doc.manifests)) {
    const entries = doc.manifests.filter(isObj).map((m) => {
      const p = isObj(m.platform) ? m.platform : undefined;
      return {
        digest: String(m.digest),
        ...(p && {
          platform: {
            os: String(p.os ?? ''),
            architecture: String(p.architecture ?? ''),
            ...(typeof p.variant === 'string' && { variant: p.variant }),
          },
        }),
      };
    });
    return { kind: 'index', entries };
  }
  if (isObj(doc.config) && Array.isArray(doc.layers)) {
    return {
      kind: 'manifest',
      configDigest: String(doc.config.digest),
      layers: doc.layers.filter(isObj).map((l) => ({
        digest: String(l.digest),
        size: typeof l.size === 'number' ? l.size : 0,
      })),
    };
  }
  throw new ManifestError('neither an image manifest nor an image index');
}

/** This machine's platform in OCI terms. */
export function hostPlatform(arch: string = process.arch): Platform {
  const map: Record<string, Platform> = {
    x64: { os: 'linux', architecture: 'amd64' },
    arm64: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
    ia32: { os: 'linux', architecture: '386' },
    ppc64: { os: 'linux', architecture: 'ppc64le' },
    s390x: { os: 'linux', architecture: 's390x' },
    riscv64: { os: 'linux', architecture: 'riscv64' },
  };
  return map[arch] ?? { os: 'linux', architecture: arch };
}

/** The entry of an index for `want`: same os and architecture, the same variant preferred. */
export function selectPlatform(
  entries: readonly { digest: string; platform?: Platform }[],
  want: Platform,
): string {
  const same = entries.filter(
    (e) => e.platform?.os === want.os && e.platform.architecture === want.architecture,
  );
  const exact = same.find((e) => (e.platform?.variant ?? want.variant) === want.variant);
  const chosen = exact ?? same.find((e) => e.platform?.variant === undefined) ?? same[0];
  if (!chosen) {
    const have = entries
      .map((e) => (e.platform ? `${e.platform.os}/${e.platform.architecture}` : '?'))
      .join(', ');
    throw new ManifestError(
      `no image for ${want.os}/${want.architecture} in the image index (it has: ${have || 'nothing'})`,
    );
  }
  return chosen.digest;
}

function stringList(v: unknown, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
    throw new ManifestError(`the image config's ${what} is not a list of strings`);
  }
  return v;
}

/** The runtime part of an OCI image config blob (`config.Entrypoint`, `Cmd`, `Env`, …). */
export function imageConfigFromBlob(bytes: Buffer | string): ImageConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString());
  } catch {
    throw new ManifestError('the image config is not JSON');
  }
  const c = isObj(doc) && isObj(doc.config) ? doc.config : {};
  const out: ImageConfig = {};
  const entrypoint = stringList(c.Entrypoint, 'Entrypoint');
  const cmd = stringList(c.Cmd, 'Cmd');
  const env = stringList(c.Env, 'Env');
  if (entrypoint) out.Entrypoint = entrypoint;
  if (cmd) out.Cmd = cmd;
  if (env) out.Env = env;
  if (typeof c.WorkingDir === 'string' && c.WorkingDir !== '') out.WorkingDir = c.WorkingDir;
  if (typeof c.User === 'string' && c.User !== '') out.User = c.User;
  return out;
}

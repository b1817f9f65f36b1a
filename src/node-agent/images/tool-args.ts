// argv of every skopeo and umoci call, built from typed inputs (never a shell string). Pure.
import type { ImageReference } from './reference.js';
import { dockerTransportName } from './reference.js';

export interface RegistryAccess {
  /** Plain HTTP / unverified TLS: only for registries the node agent's config lists. */
  insecure: boolean;
  /** A containers-auth.json for this pull only; anonymous without one. */
  authFile?: string;
  /** The trust policy file skopeo must be given (it refuses to run without one). */
  policyFile: string;
  /** Where skopeo keeps temporary files. */
  tmpDir: string;
}

/** True when `registry` (host[:port]) is one of the configured insecure registries. */
export function isInsecureRegistry(registry: string, insecure: readonly string[]): boolean {
  const r = registry.toLowerCase();
  return insecure.some((i) => i.trim().toLowerCase() === r);
}

function common(access: RegistryAccess): string[] {
  return ['--policy', access.policyFile, '--tmpdir', access.tmpDir];
}

/** `skopeo inspect --raw`: the manifest (or index) bytes exactly as the registry serves them. */
export function skopeoInspectRawArgs(ref: ImageReference, access: RegistryAccess): string[] {
  return [
    ...common(access),
    'inspect',
    '--raw',
    '--retry-times',
    '2',
    `--tls-verify=${access.insecure ? 'false' : 'true'}`,
    ...(access.authFile ? ['--authfile', access.authFile] : ['--no-creds']),
    dockerTransportName(ref),
  ];
}

/** `skopeo copy` of the manifest `digest` into an OCI layout under the tag `layoutTag`. */
export function skopeoCopyArgs(
  ref: ImageReference,
  digest: string,
  layoutDir: string,
  layoutTag: string,
  access: RegistryAccess,
): string[] {
  return [
    ...common(access),
    'copy',
    '--quiet',
    '--retry-times',
    '2',
    `--src-tls-verify=${access.insecure ? 'false' : 'true'}`,
    ...(access.authFile ? ['--src-authfile', access.authFile] : ['--src-no-creds']),
    dockerTransportName(ref, digest),
    `oci:${layoutDir}:${layoutTag}`,
  ];
}

/** `umoci unpack` of the layout's tag into a runtime bundle (rootfs/ + config.json). */
export function umociUnpackArgs(layoutDir: string, layoutTag: string, bundleDir: string): string[] {
  return ['unpack', '--image', `${layoutDir}:${layoutTag}`, bundleDir];
}

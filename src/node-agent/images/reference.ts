// OCI image references as Kubernetes and Docker read them: `busybox` is
// `docker.io/library/busybox:latest`, a first component with a dot, a colon or named `localhost`
// is a registry, a digest pins the content. Pure.

/** What a pull needs to know about a reference, normalized. */
export interface ImageReference {
  /** Registry host, with its port when one was written (`docker.io`, `127.0.0.1:5000`). */
  registry: string;
  /** Repository path inside the registry (`library/busybox`). */
  repository: string;
  /** The tag; `latest` when neither a tag nor a digest was written. */
  tag?: string;
  /** `algorithm:hex`; when present it decides what is pulled (the tag is only a label). */
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const MAX_NAME_LENGTH = 255;

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]{1,5})?$`,
);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** A reference that cannot be pulled as written; Kubernetes' reason is InvalidImageName. */
export class InvalidImageNameError extends Error {
  readonly reason = 'InvalidImageName';
  constructor(
    readonly image: string,
    detail: string,
  ) {
    super(`Failed to apply default image tag "${image}": couldn't parse image name: ${detail}`);
    this.name = 'InvalidImageNameError';
  }
}

/** True for `sha256:<64 hex>` and `sha512:<128 hex>`, the digests skopeo verifies. */
export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** Parses and normalizes an image reference; throws InvalidImageNameError. */
export function parseImageReference(image: string): ImageReference {
  const bad = (detail: string): never => {
    throw new InvalidImageNameError(image, detail);
  };
  if (image === '') bad('empty reference');
  if (image !== image.trim() || /\s/.test(image)) bad('whitespace in reference');
  if (image.includes('://')) bad('a reference has no scheme');

  let rest = image;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest))
      bad(`invalid digest ${JSON.stringify(digest)} (sha256 or sha512, lowercase hex)`);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG_RE.test(tag)) bad(`invalid tag ${JSON.stringify(tag)}`);
  }
  if (rest === '') bad('missing repository');
  if (rest.length > MAX_NAME_LENGTH)
    bad(`repository name longer than ${MAX_NAME_LENGTH} characters`);

  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
      registry = first;
      repository = rest.slice(slash + 1);
      if (!DOMAIN_RE.test(registry)) bad(`invalid registry ${JSON.stringify(registry)}`);
    }
  }
  if (DOCKER_HUB_ALIASES.has(registry.toLowerCase())) {
    registry = DOCKER_HUB;
    if (!repository.includes('/')) repository = `library/${repository}`;
  }
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT_RE.test(component)) {
      bad(
        component.toLowerCase() !== component
          ? 'repository name must be lowercase'
          : `invalid repository path component ${JSON.stringify(component)}`,
      );
    }
  }
  if (tag === undefined && digest === undefined) tag = 'latest';
  return {
    registry,
    repository,
    ...(tag !== undefined && { tag }),
    ...(digest !== undefined && { digest }),
  };
}

/** `registry/repository`. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The full normalized form: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: ImageReference): string {
  return (
    repositoryName(ref) +
    (ref.tag !== undefined ? `:${ref.tag}` : '') +
    (ref.digest !== undefined ? `@${ref.digest}` : '')
  );
}

/**
 * The key a reference resolves under in the cache: `registry/repo@digest` for a pinned reference
 * (the tag is only a label then), `registry/repo:tag` otherwise.
 */
export function resolutionKey(ref: ImageReference): string {
  return ref.digest !== undefined
    ? `${repositoryName(ref)}@${ref.digest}`
    : `${repositoryName(ref)}:${ref.tag ?? 'latest'}`;
}

/**
 * skopeo's `docker://` name. skopeo refuses a tag together with a digest, so a pinned reference
 * (or an explicit `digest`, the one a tag was resolved to) is pulled by digest alone.
 */
export function dockerTransportName(ref: ImageReference, digest = ref.digest): string {
  return digest !== undefined
    ? `docker://${repositoryName(ref)}@${digest}`
    : `docker://${repositoryName(ref)}:${ref.tag ?? 'latest'}`;
}

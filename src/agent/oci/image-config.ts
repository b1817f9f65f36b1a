import { InvalidInputError } from '../errors.js';

/** The parts of an OCI image config (`config` in the image's config blob) a container inherits. */
export interface ImageConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
}

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Kubernetes' rule: `command` replaces the image's Entrypoint and `args` its Cmd; `args` alone
 * keeps the Entrypoint; `command` alone drops the Cmd too.
 */
export function resolveArgs(
  field: string,
  command: string[] | undefined,
  args: string[] | undefined,
  image: ImageConfig = {},
): string[] {
  const entrypoint = image.Entrypoint ?? [];
  const cmd = image.Cmd ?? [];
  const hasCommand = command !== undefined && command.length > 0;
  const hasArgs = args !== undefined && args.length > 0;
  let argv: string[];
  if (hasCommand) argv = hasArgs ? [...command, ...args] : [...command];
  else argv = hasArgs ? [...entrypoint, ...args] : [...entrypoint, ...cmd];
  if (argv.length === 0) {
    throw new InvalidInputError(
      `${field}.command`,
      'nothing to run: no command, args or image entrypoint',
    );
  }
  return argv;
}

/** Image env first, then the container's; a container variable replaces the image's of that name. */
export function mergeEnv(
  containerEnv: { name: string; value?: string }[] | undefined,
  image: ImageConfig = {},
): { name: string; value: string }[] {
  const merged = new Map<string, string>();
  for (const entry of image.Env ?? []) {
    const eq = entry.indexOf('=');
    if (eq > 0) merged.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  if (!merged.has('PATH')) merged.set('PATH', DEFAULT_PATH.slice('PATH='.length));
  for (const e of containerEnv ?? []) merged.set(e.name, e.value ?? '');
  return [...merged].map(([name, value]) => ({ name, value }));
}

/** The image's user only when the container sets none; only numeric users exist in the guest. */
export function resolveUser(
  field: string,
  containerUser: string | undefined,
  image: ImageConfig = {},
): string {
  if (containerUser) return containerUser;
  const user = image.User ?? '';
  if (user === '') return '0';
  if (!/^[0-9]+(:[0-9]+)?$/.test(user)) {
    throw new InvalidInputError(
      `${field}.user`,
      `the image's user ${JSON.stringify(user)} is a name; set a numeric user (uid or uid:gid) on the container`,
    );
  }
  return user;
}

/**
 * The container's supplementary groups, plus the image user's own (from the image's /etc/group)
 * when the image's user is the one that runs, as container runtimes add them.
 */
export function resolveSupplementalGroups(
  containerUser: string | undefined,
  containerGroups: readonly (number | string)[] | undefined,
  imageUserGroups: readonly number[] = [],
): (number | string)[] | undefined {
  if (containerUser || imageUserGroups.length === 0) return containerGroups && [...containerGroups];
  return [...new Set([...imageUserGroups, ...(containerGroups ?? [])])];
}

export function resolveWorkingDir(
  containerDir: string | undefined,
  image: ImageConfig = {},
): string {
  return containerDir || image.WorkingDir || '/';
}

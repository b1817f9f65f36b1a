// The protobuf Spec (Go-style field names, empty values for "unset") to the OCI runtime-spec
// config.json that crun reads. Pure: the container manager writes the result to the bundle.
import type {
  LinuxCapabilities,
  LinuxDevice,
  LinuxResources,
  Mount,
  Process,
  Spec,
} from '../../generated/oci.js';
import { DEFAULT_CAPABILITIES } from '../contract.js';

export { DEFAULT_CAPABILITIES };

export const DEFAULT_OCI_VERSION = '1.1.0';

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** crun needs its own mount namespace; pid, ipc and uts keep the container apart from the agent. */
export const REQUIRED_NAMESPACES = ['pid', 'mount', 'ipc', 'uts'];

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
  username?: string;
}

export interface OciCapabilities {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
}

export interface OciProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: OciUser;
  args?: string[];
  env?: string[];
  cwd: string;
  capabilities?: OciCapabilities;
  rlimits?: { type: string; hard: number; soft: number }[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciDevice {
  path: string;
  type: string;
  major?: number;
  minor?: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

export interface OciDeviceCgroup {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface OciResources {
  devices?: OciDeviceCgroup[];
  memory?: { limit?: number; reservation?: number; swap?: number; swappiness?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  pids?: { limit: number };
}

export interface OciLinux {
  namespaces: { type: string; path?: string }[];
  uidMappings?: { containerID: number; hostID: number; size: number }[];
  gidMappings?: { containerID: number; hostID: number; size: number }[];
  sysctl?: Record<string, string>;
  devices?: OciDevice[];
  resources?: OciResources;
  cgroupsPath?: string;
  rootfsPropagation?: string;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  mountLabel?: string;
}

export interface OciConfig {
  ociVersion: string;
  process?: OciProcess;
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux: OciLinux;
}

const nonEmpty = <T>(xs: T[] | undefined): T[] | undefined =>
  xs && xs.length > 0 ? [...xs] : undefined;
const nonEmptyString = (s: string | undefined): string | undefined => (s ? s : undefined);
const nonEmptyRecord = (
  r: Record<string, string> | undefined,
): Record<string, string> | undefined => (r && Object.keys(r).length > 0 ? { ...r } : undefined);

/** Drops undefined values so the JSON has no `"x": null` and the schema sees only what is set. */
function compact<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function capabilities(caps: LinuxCapabilities | undefined): OciCapabilities {
  const sets = caps && [
    caps.Bounding,
    caps.Effective,
    caps.Inheritable,
    caps.Permitted,
    caps.Ambient,
  ];
  if (!caps || sets?.every((s) => s.length === 0)) {
    return {
      bounding: [...DEFAULT_CAPABILITIES],
      effective: [...DEFAULT_CAPABILITIES],
      permitted: [...DEFAULT_CAPABILITIES],
    };
  }
  return compact({
    bounding: nonEmpty(caps.Bounding),
    effective: nonEmpty(caps.Effective),
    inheritable: nonEmpty(caps.Inheritable),
    permitted: nonEmpty(caps.Permitted),
    ambient: nonEmpty(caps.Ambient),
  });
}

/** The `process` object of config.json; also the `--process` file of `crun exec`. */
export function ociProcess(p: Process): OciProcess {
  const env = [...p.Env];
  if (!env.some((e) => e.startsWith('PATH='))) env.unshift(DEFAULT_PATH);
  const user = p.User;
  return compact({
    terminal: p.Terminal || undefined,
    consoleSize:
      p.Terminal && p.ConsoleSize
        ? { height: p.ConsoleSize.Height, width: p.ConsoleSize.Width }
        : undefined,
    user: compact({
      uid: user?.UID ?? 0,
      gid: user?.GID ?? 0,
      additionalGids: nonEmpty(user?.AdditionalGids),
      username: nonEmptyString(user?.Username),
    }),
    args: nonEmpty(p.Args),
    env,
    cwd: p.Cwd || '/',
    capabilities: capabilities(p.Capabilities),
    rlimits: nonEmpty(p.Rlimits.map((r) => ({ type: r.Type, hard: r.Hard, soft: r.Soft }))),
    noNewPrivileges: p.NoNewPrivileges || undefined,
    apparmorProfile: nonEmptyString(p.ApparmorProfile),
    oomScoreAdj: p.OOMScoreAdj !== 0 ? p.OOMScoreAdj : undefined,
    selinuxLabel: nonEmptyString(p.SelinuxLabel),
  });
}

function mount(m: Mount): OciMount {
  return compact({
    destination: m.destination,
    type: nonEmptyString(m.type),
    source: nonEmptyString(m.source),
    options: nonEmpty(m.options),
  });
}

export function ociDevice(d: LinuxDevice): OciDevice {
  return compact({
    path: d.Path,
    type: d.Type,
    major: d.Type === 'p' ? undefined : d.Major,
    minor: d.Type === 'p' ? undefined : d.Minor,
    fileMode: d.FileMode !== 0 ? d.FileMode : undefined,
    uid: d.UID,
    gid: d.GID,
  });
}

const positive = (n: number): number | undefined => (n > 0 ? n : undefined);

export function ociResources(r: LinuxResources | undefined): OciResources | undefined {
  if (!r) return undefined;
  const memory =
    r.Memory &&
    compact({
      limit: positive(r.Memory.Limit),
      reservation: positive(r.Memory.Reservation),
      swap: positive(r.Memory.Swap),
      swappiness: positive(r.Memory.Swappiness),
    });
  const cpu =
    r.CPU &&
    compact({
      shares: positive(r.CPU.Shares),
      quota: positive(r.CPU.Quota),
      period: positive(r.CPU.Period),
      cpus: nonEmptyString(r.CPU.Cpus),
      mems: nonEmptyString(r.CPU.Mems),
    });
  const out = compact({
    devices: nonEmpty(
      r.Devices.map((d) =>
        compact({
          allow: d.Allow,
          type: nonEmptyString(d.Type),
          major: d.Major >= 0 && d.Type !== 'a' ? d.Major : undefined,
          minor: d.Minor >= 0 && d.Type !== 'a' ? d.Minor : undefined,
          access: nonEmptyString(d.Access),
        }),
      ),
    ),
    memory: memory && Object.keys(memory).length > 0 ? memory : undefined,
    cpu: cpu && Object.keys(cpu).length > 0 ? cpu : undefined,
    pids: r.Pids && r.Pids.Limit !== 0 ? { limit: r.Pids.Limit } : undefined,
  });
  return Object.keys(out).length > 0 ? out : undefined;
}

// The schema knows private/shared/slave/unbindable; Go runtimes also send the recursive "r" forms.
function propagation(p: string | undefined): string | undefined {
  if (!p) return undefined;
  return /^r(private|shared|slave|unbindable)$/.test(p) ? p.slice(1) : p;
}

function namespaces(spec: Spec): { type: string; path?: string }[] {
  const given = (spec.Linux?.Namespaces ?? []).map((ns) =>
    compact({ type: ns.Type, path: nonEmptyString(ns.Path) }),
  );
  const have = new Set(given.map((ns) => ns.type));
  return [...given, ...REQUIRED_NAMESPACES.filter((t) => !have.has(t)).map((type) => ({ type }))];
}

/**
 * config.json for crun. `rootPath` is the (already checked) root path; hooks and seccomp are not
 * carried over: hooks ran on the host, and this agent applies no seccomp policy.
 */
export function toOciConfig(spec: Spec, rootPath: string = spec.Root?.Path ?? ''): OciConfig {
  const linux = spec.Linux;
  const idMap = (m: { HostID: number; ContainerID: number; Size: number }) => ({
    containerID: m.ContainerID,
    hostID: m.HostID,
    size: m.Size,
  });
  return compact({
    ociVersion: spec.Version || DEFAULT_OCI_VERSION,
    process: spec.Process && ociProcess(spec.Process),
    root: compact({ path: rootPath, readonly: spec.Root?.Readonly || undefined }),
    hostname: nonEmptyString(spec.Hostname),
    mounts: nonEmpty(spec.Mounts.map(mount)),
    annotations: nonEmptyRecord(spec.Annotations),
    linux: compact({
      namespaces: namespaces(spec),
      uidMappings: nonEmpty(linux?.UIDMappings.map(idMap)),
      gidMappings: nonEmpty(linux?.GIDMappings.map(idMap)),
      sysctl: nonEmptyRecord(linux?.Sysctl),
      devices: nonEmpty(linux?.Devices.map(ociDevice)),
      resources: ociResources(linux?.Resources),
      cgroupsPath: nonEmptyString(linux?.CgroupsPath),
      rootfsPropagation: propagation(linux?.RootfsPropagation),
      maskedPaths: nonEmpty(linux?.MaskedPaths),
      readonlyPaths: nonEmpty(linux?.ReadonlyPaths),
      mountLabel: nonEmptyString(linux?.MountLabel),
    }),
  });
}

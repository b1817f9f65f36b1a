// The OCI runtime spec of one KataSandbox container, as the node agent sends it to the guest:
// the CRD's container and the image's config in, an OCI Spec out. Pure.
import type { ContainerSpec } from '../../crds/index.js';
import type { Spec, Mount as OciMount } from '../../generated/oci.js';
import { buildProcess, type BuiltProcess } from '../../agent/process-spec.js';
import { containerRootPath } from '../../agent/storage.js';
import {
  mergeEnv,
  resolveArgs,
  resolveSupplementalGroups,
  resolveUser,
  resolveWorkingDir,
  type ImageConfig,
} from '../../agent/oci/image-config.js';
import { DEFAULT_CAPABILITIES } from '../../agent/contract.js';

/** The fields of a KataSandbox container the OCI spec is built from. */
export type ContainerInput = Pick<
  ContainerSpec,
  | 'name'
  | 'command'
  | 'args'
  | 'env'
  | 'workingDir'
  | 'user'
  | 'primaryGroup'
  | 'supplementalGroups'
  | 'tty'
  | 'volumeMounts'
  | 'devices'
>;

export interface SpecInputs {
  container: ContainerInput;
  /** Field path of the container in the sandbox spec, for error messages. */
  field: string;
  hostname: string;
  image?: ImageConfig;
  /** The image user's supplementary groups (a named image user's, from the image). */
  imageUserGroups?: readonly number[];
  /** Guest paths of the sandbox's volumes (their 9p locations), by volume name. */
  volumeGuestPaths: ReadonlyMap<string, string>;
  /**
   * The guest's resolv.conf (written from CreateSandbox's dns), bound read-only at
   * /etc/resolv.conf as kubelet does for pods, unless a volume is mounted there.
   */
  resolvConf?: string;
}

const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

const mount = (destination: string, type: string, source: string, options: string[]): OciMount => ({
  destination,
  type,
  source,
  options,
});

const RESOLV_CONF = '/etc/resolv.conf';

function baseMounts(): OciMount[] {
  return [
    mount('/proc', 'proc', 'proc', ['nosuid', 'noexec', 'nodev']),
    mount('/dev', 'tmpfs', 'tmpfs', ['nosuid', 'strictatime', 'mode=755', 'size=65536k']),
    mount('/dev/pts', 'devpts', 'devpts', [
      'nosuid',
      'noexec',
      'newinstance',
      'ptmxmode=0666',
      'mode=0620',
    ]),
    mount('/dev/shm', 'tmpfs', 'shm', ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']),
    mount('/dev/mqueue', 'mqueue', 'mqueue', ['nosuid', 'noexec', 'nodev']),
    mount('/sys', 'sysfs', 'sysfs', ['nosuid', 'noexec', 'nodev', 'ro']),
    mount('/sys/fs/cgroup', 'cgroup', 'cgroup', ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']),
  ];
}

function resolvConfMount(inputs: SpecInputs): OciMount[] {
  const taken = (inputs.container.volumeMounts ?? []).some(
    (vm) => vm.mountPath === RESOLV_CONF || vm.mountPath === '/etc',
  );
  return inputs.resolvConf && !taken
    ? [mount(RESOLV_CONF, 'bind', inputs.resolvConf, ['rbind', 'ro'])]
    : [];
}

function volumeMounts(inputs: SpecInputs): OciMount[] {
  return (inputs.container.volumeMounts ?? []).map((vm) => {
    const source = inputs.volumeGuestPaths.get(vm.name);
    if (source === undefined) {
      // The CRD's CEL rule refuses this at admission; here it would be a bug in the caller.
      throw new Error(
        `${inputs.field}.volumeMounts: volume ${JSON.stringify(vm.name)} has no guest path`,
      );
    }
    return mount(vm.mountPath, 'bind', source, ['rbind', vm.readOnly ? 'ro' : 'rw']);
  });
}

export interface BuiltSpec extends BuiltProcess {
  spec: Spec;
}

/**
 * The OCI runtime spec of one container, before the seed's constraints (oci-constraints.ts) are
 * applied. Devices are listed by container path; the guest agent fills in their numbers.
 */
export function buildContainerSpec(inputs: SpecInputs): BuiltSpec {
  const c = inputs.container;
  const built = buildProcess({
    args: resolveArgs(inputs.field, c.command, c.args, inputs.image),
    env: mergeEnv(c.env, inputs.image),
    cwd: resolveWorkingDir(c.workingDir, inputs.image),
    user: resolveUser(inputs.field, c.user, inputs.image),
    primaryGroup: c.primaryGroup,
    supplementalGroups: resolveSupplementalGroups(
      c.user,
      c.supplementalGroups,
      inputs.imageUserGroups,
    ),
    terminal: c.tty ?? false,
  });
  const caps = [...DEFAULT_CAPABILITIES];
  const spec: Spec = {
    Version: '1.1.0',
    Process: {
      ...built.process,
      Capabilities: {
        Bounding: caps,
        Effective: caps,
        Inheritable: [],
        Permitted: caps,
        Ambient: [],
      },
      Rlimits: [{ Type: 'RLIMIT_NOFILE', Hard: 1_048_576, Soft: 1_048_576 }],
      NoNewPrivileges: false,
    },
    Root: { Path: containerRootPath(c.name), Readonly: false },
    Hostname: inputs.hostname,
    Mounts: [...baseMounts(), ...resolvConfMount(inputs), ...volumeMounts(inputs)],
    Annotations: {},
    Linux: {
      UIDMappings: [],
      GIDMappings: [],
      Sysctl: {},
      CgroupsPath: '',
      Namespaces: ['pid', 'ipc', 'uts', 'mount'].map((Type) => ({ Type, Path: '' })),
      Devices: (c.devices ?? []).map((d) => ({
        Path: d.containerPath,
        Type: 'b',
        Major: 0,
        Minor: 0,
        FileMode: 0o660,
        UID: 0,
        GID: 0,
      })),
      RootfsPropagation: '',
      MaskedPaths: [...MASKED_PATHS],
      ReadonlyPaths: [...READONLY_PATHS],
      MountLabel: '',
    },
  };
  return { ...built, spec };
}

/**
 * The process of an exec in a container: `command` with the container's environment, working
 * directory and user (as a Pod's exec inherits them).
 */
export function buildExecProcess(
  inputs: Pick<SpecInputs, 'container' | 'field' | 'image' | 'imageUserGroups'>,
  command: string[],
  terminal: boolean,
): BuiltProcess {
  const c = inputs.container;
  return buildProcess({
    args: [...command],
    env: mergeEnv(c.env, inputs.image),
    cwd: resolveWorkingDir(c.workingDir, inputs.image),
    user: resolveUser(inputs.field, c.user, inputs.image),
    primaryGroup: c.primaryGroup,
    supplementalGroups: resolveSupplementalGroups(
      c.user,
      c.supplementalGroups,
      inputs.imageUserGroups,
    ),
    terminal,
  });
}

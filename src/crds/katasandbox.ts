// The KataSandbox schema: the single source of the CRD's OpenAPI schema and of the
// TypeScript types below. Field names are a contract: add fields, never rename.
//
// Immutability: the whole spec is immutable once created (one `self == oldSelf` rule on spec).
// Every field shapes the VM (vcpus, memory, kernel, network, 9p shares) or its containers (which
// the guest agent creates once, like a Pod's), and even terminationGracePeriodSeconds and
// restartPolicy are read by the node agent when the sandbox starts; there is no live-update
// path, so refusing the change beats silently ignoring it. Delete and recreate instead.
//
// Bounds (chosen so every CEL rule's estimated cost stays far below the API server's budget):
// vcpus 1..32, memoryMiB 512..65536 (MIN_MEMORY_MIB: what the guest image needs),
// terminationGracePeriodSeconds 0..86400, at most 16 containers, 32 volumes, 32 mounts, 16
// devices and 256 env vars per container; paths ≤ 1024. Strings carried into the guest or the
// host refuse NUL by pattern (no CEL cost).
import type { V1ListMeta, V1ObjectMeta } from '@kubernetes/client-node';
import {
  arr,
  bool,
  enumOf,
  type Infer,
  int,
  mapList,
  obj,
  record,
  str,
  type Validation,
} from './schema.js';
import { DEFAULT_MEMORY_MIB } from './sandbox-facts.js';

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
const UINT32_MAX = 4294967295;

const DOMAIN_LABEL = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_LABEL}(?:\\.${DOMAIN_LABEL})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]{1,5})?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
/**
 * The OCI/Docker reference grammar ([registry[:port]/]path[:tag][@digest], path lowercase), in
 * syntax RE2 (the API server's CEL) and JavaScript read alike. The node agent's parser
 * (src/node-agent/images/reference.ts) also limits the name to 255 characters.
 */
export const IMAGE_REFERENCE_PATTERN =
  `^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*` +
  '(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}))?$';
const PATH_MAX_LENGTH = 1024;
/**
 * The least spec.vm.memoryMiB admitted. Measured (bench/guest-min-memory.ts, docs/operations.md
 * "Guest memory"): the default kernel, booting the image's read-only root drive, has its agent
 * answering in 64 MiB (thrashing below); with margin 96, plus 64 MiB for the containers'
 * processes. A `kernel: debian` sandbox boots an initrd unpacked into RAM and needs more: the node
 * agent refuses it below that image's floor (MemoryTooSmall).
 */
export const MIN_MEMORY_MIB = 160;
const MAX_CONTAINERS = 16;
const MAX_VOLUMES = 32;

// Absoluteness is an OpenAPI pattern (checked without CEL); '..' needs a rule, since the API
// server's regexps have no lookahead. A leading '/' means '..' can only appear as '/../' or a
// trailing '/..'.
const NO_DOT_DOT: Validation = {
  rule: "!self.contains('/../') && !self.endsWith('/..')",
  message: "must be an absolute path without '..' segments",
};

// NUL cannot pass through argv, environ or a path (C strings end there), so a string that
// carries one would reach the guest or host cut short. Refused by the pattern, not by CEL: a
// pattern costs nothing in the CEL budget, however long the string or list. RE2 (the API
// server) and JavaScript read \x00 alike.
const NO_NUL = '^[^\\x00]*$';
const ABS_PATH_NO_NUL = '^/[^\\x00]*$';

function absPath(description: string) {
  return str({
    description: `${description} An absolute path without '..' segments or NUL characters.`,
    maxLength: PATH_MAX_LENGTH,
    pattern: ABS_PATH_NO_NUL,
    validations: [NO_DOT_DOT],
  });
}

/** A string handed to a process (argv, environment): anything but NUL. */
function processString(description: string, maxLength: number) {
  return str({ description: `${description} No NUL characters.`, maxLength, pattern: NO_NUL });
}

function dnsLabel(description: string) {
  return str({ description, maxLength: 63, minLength: 1, pattern: DNS_LABEL });
}

function time(description: string) {
  return str({ description, format: 'date-time', maxLength: 64 });
}

// --- spec ---------------------------------------------------------------------------------------

export const vmSpecSchema = obj(
  {
    vcpus: int({
      description: 'Virtual CPUs of the sandbox VM, 1 to 32.',
      minimum: 1,
      maximum: 32,
      default: 1,
    }),
    memoryMiB: int({
      description:
        `Memory of the sandbox VM in MiB, ${MIN_MEMORY_MIB} to 65536 (64 GiB). The default ` +
        'kernel reads the guest root from a read-only drive, so this memory holds the kernel, ' +
        'the guest agent and the containers; `kernel: debian` boots an initrd unpacked into it ' +
        'and needs about 470 MiB. A node agent whose image needs more than asked refuses the ' +
        'sandbox (reason MemoryTooSmall).',
      minimum: MIN_MEMORY_MIB,
      maximum: 65536,
      default: DEFAULT_MEMORY_MIB,
    }),
    accelerator: enumOf(['auto', 'kvm', 'tcg'], {
      description:
        'QEMU accelerator: kvm (hardware virtualisation; fails if /dev/kvm is unusable), tcg ' +
        '(emulation; slow but works anywhere) or auto (kvm when the node has a usable /dev/kvm, ' +
        'tcg otherwise). status.vm.accelerator says which one was used.',
      default: 'auto',
    }),
    kernel: str({
      description:
        'Name of the guest kernel, which the node agent maps to files of its guest image: ' +
        '"default" (a kernel made for the job, everything built in: the fastest boot) or ' +
        '"debian" (Debian\'s stock kernel, for comparison). A name the node has no kernel for ' +
        'fails the sandbox with reason KernelNotFound.',
      maxLength: 63,
      minLength: 1,
      pattern: '^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$',
      default: 'default',
    }),
  },
  { description: 'The virtual machine that hosts the sandbox.', default: {} },
);

export const networkSpecSchema = obj(
  {
    mode: enumOf(['none', 'cni', 'netns'], {
      description:
        'How the sandbox is networked: none (loopback only), cni (the node agent creates a ' +
        "network namespace and runs the node's CNI plugins in it) or netns (use the existing " +
        "network namespace at netnsPath). The namespace's interfaces are bridged into the VM.",
      default: 'none',
    }),
    netnsPath: str({
      description:
        'Path of an existing network namespace (e.g. /var/run/netns/x), required with, and only ' +
        "with, mode netns. An absolute path without '..', '.' or empty segments or NUL " +
        "characters, not under /proc (another process's namespace is never joined).",
      maxLength: PATH_MAX_LENGTH,
      pattern: ABS_PATH_NO_NUL,
      validations: [
        NO_DOT_DOT,
        {
          // '//proc' and '/./proc' are /proc too: only a clean path can be judged by its prefix.
          rule: "!self.contains('//') && !self.contains('/./') && !self.endsWith('/.')",
          message: "must be a clean path, without '.' or empty segments",
        },
        {
          rule: "self != '/proc' && !self.startsWith('/proc/')",
          message:
            "must not be under /proc (a process's namespace): name a bind-mounted namespace " +
            'such as /run/netns/<name>',
        },
      ],
    }),
  },
  {
    description: 'Networking of the sandbox VM.',
    default: {},
    validations: [
      {
        rule: "!has(self.mode) || self.mode != 'netns' || has(self.netnsPath)",
        message: 'netnsPath is required when mode is netns',
        fieldPath: '.netnsPath',
      },
      {
        rule: "!has(self.netnsPath) || (has(self.mode) && self.mode == 'netns')",
        message: 'netnsPath is allowed only when mode is netns',
        fieldPath: '.netnsPath',
      },
    ],
  },
);

export const dnsSpecSchema = obj(
  {
    nameservers: arr(
      str({
        description: 'An IPv4 or IPv6 address of a DNS server.',
        maxLength: 45,
        pattern: '^[0-9a-fA-F:.]+$',
      }),
      { description: 'DNS servers, at most 3 (the resolv.conf limit).', maxItems: 3 },
    ),
    searches: arr(
      str({
        description: 'A DNS search domain.',
        maxLength: 253,
        pattern: '^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?\\.?$',
      }),
      { description: 'DNS search domains, at most 32.', maxItems: 32 },
    ),
  },
  {
    description:
      "The guest's resolv.conf. When unset, the node's resolv.conf (mode none or cni) or the " +
      "network namespace's (mode netns) is used.",
  },
);

export const volumeSchema = obj(
  {
    name: dnsLabel('Name of the volume (a DNS label), referenced by containers[].volumeMounts.'),
    hostPath: obj(
      {
        path: absPath(
          'Directory on the node shared into the VM over 9p; it must lie under one of the ' +
            "node agent's allow-listed roots, or the sandbox fails with reason HostPathNotAllowed.",
        ),
        readOnly: bool({ description: 'Share the directory read-only.', default: false }),
      },
      { description: 'A directory on the node, shared into the VM.', required: ['path'] },
    ),
  },
  { description: 'A volume the containers can mount.', required: ['name', 'hostPath'] },
);

export const rootfsSchema = obj(
  {
    hostPath: obj(
      {
        path: absPath(
          'Directory on the node holding an unpacked root filesystem, shared into the VM.',
        ),
      },
      { description: 'An unpacked root filesystem directory on the node.', required: ['path'] },
    ),
    block: obj(
      {
        path: absPath('Filesystem image file or block device on the node.'),
        fsType: enumOf(['ext4', 'xfs'], {
          description: 'Filesystem of the image.',
          default: 'ext4',
        }),
        readOnly: bool({ description: 'Attach the image read-only.', default: false }),
      },
      {
        description: 'A filesystem image or block device, attached to the VM as a disk.',
        required: ['path'],
      },
    ),
  },
  {
    description:
      'A prepared root filesystem, instead of an image: exactly one of hostPath and block.',
    validations: [
      {
        rule: 'has(self.hostPath) != has(self.block)',
        message: 'exactly one of rootfs.hostPath and rootfs.block must be set',
      },
    ],
  },
);

export const envVarSchema = obj(
  {
    name: str({
      description: 'Name of the environment variable.',
      minLength: 1,
      maxLength: 256,
      pattern: '^[-._a-zA-Z][-._a-zA-Z0-9]*$',
    }),
    value: processString('Value of the environment variable.', 32768),
  },
  { description: 'An environment variable.', required: ['name'] },
);

export const volumeMountSchema = obj(
  {
    name: dnsLabel('Name of the volume to mount; must name a volume in spec.volumes.'),
    mountPath: absPath('Where the volume is mounted in the container.'),
    readOnly: bool({ description: 'Mount the volume read-only.', default: false }),
  },
  { description: 'A mount of one of spec.volumes.', required: ['name', 'mountPath'] },
);

export const deviceSchema = obj(
  {
    hostPath: absPath('Device node on the node, e.g. /dev/loop3, passed to the VM.'),
    containerPath: absPath('Where the device appears in the container, e.g. /dev/xvdb.'),
  },
  {
    description: 'A device of the node passed through to the container.',
    required: ['hostPath', 'containerPath'],
  },
);

export const containerSpecSchema = obj(
  {
    name: dnsLabel(
      'Name of the container, a DNS label unique in the sandbox; also its id in the guest.',
    ),
    image: str({
      description:
        'OCI image reference, pulled by the node agent. Exactly one of image and rootfs.',
      minLength: 1,
      maxLength: 1024,
      pattern: '^\\S+$',
      validations: [
        {
          // Guarded like user's: a whitespace failure is reported by the pattern alone.
          rule: `!self.matches('^\\\\S+$') || self.matches(r'${IMAGE_REFERENCE_PATTERN}')`,
          message:
            'must be an image reference: [registry[:port]/]repository[:tag][@sha256:digest], ' +
            'the repository in lowercase',
        },
      ],
    }),
    imagePullPolicy: enumOf(['Always', 'IfNotPresent', 'Never'], {
      description:
        'When to pull the image: Always, IfNotPresent or Never. Only with image. Default: ' +
        'Always for a :latest or untagged image, IfNotPresent otherwise.',
    }),
    rootfs: rootfsSchema,
    command: arr(processString('An argument.', 16384), {
      description: "Entrypoint, replacing the image's ENTRYPOINT (as in a Pod).",
      maxItems: 256,
    }),
    args: arr(processString('An argument.', 16384), {
      description: "Arguments to the entrypoint, replacing the image's CMD (as in a Pod).",
      maxItems: 256,
    }),
    env: mapList(envVarSchema, ['name'], {
      description: 'Environment variables, names unique; at most 256.',
      maxItems: 256,
    }),
    workingDir: absPath("Working directory of the process. Default: the image's, or /."),
    user: str({
      description:
        'User the process runs as: "uid" or "uid:gid", numeric, each at most 4294967295. ' +
        "Default: the image's user, or 0.",
      maxLength: 21,
      pattern: '^[0-9]{1,10}(:[0-9]{1,10})?$',
      validations: [
        {
          // Guarded by matches() so a pattern failure is not also reported as an int() error.
          rule:
            "!self.matches('^[0-9]{1,10}(:[0-9]{1,10})?$') || " +
            "self.split(':').all(p, int(p) <= 4294967295)",
          message: 'uid and gid must each be at most 4294967295',
        },
      ],
    }),
    primaryGroup: int({
      description: 'Primary group id of the process, overriding the gid of user.',
      minimum: 0,
      maximum: UINT32_MAX,
    }),
    supplementalGroups: arr(int({ description: 'A group id.', minimum: 0, maximum: UINT32_MAX }), {
      description: 'Additional group ids of the process, at most 64.',
      maxItems: 64,
    }),
    tty: bool({
      description:
        "Run the container's process on a terminal in the guest: its stdin, stdout and stderr are " +
        'the terminal, whose one output (with carriage returns) is the container log. Nothing ' +
        'writes to its input: this spec has no stdin field, and, as for Pods, whose API accepts ' +
        'tty without stdin, none is required.',
      default: false,
    }),
    volumeMounts: mapList(volumeMountSchema, ['mountPath'], {
      description: 'Volumes mounted into the container, mount paths unique; at most 32.',
      maxItems: 32,
    }),
    devices: mapList(deviceSchema, ['containerPath'], {
      description: 'Devices passed through, container paths unique; at most 16.',
      maxItems: 16,
    }),
  },
  {
    description: 'A container, created inside the sandbox VM by the guest agent.',
    required: ['name'],
    validations: [
      {
        rule: 'has(self.image) != has(self.rootfs)',
        message: 'exactly one of image and rootfs must be set',
      },
      {
        rule: '!has(self.imagePullPolicy) || has(self.image)',
        message: 'imagePullPolicy is allowed only with image',
        fieldPath: '.imagePullPolicy',
      },
    ],
  },
);

export const localObjectReferenceSchema = obj(
  {
    name: str({
      description: "Name of a Secret in the sandbox's namespace.",
      minLength: 1,
      maxLength: 253,
      pattern: DNS_SUBDOMAIN,
    }),
  },
  { description: 'A reference to a Secret in the same namespace.', required: ['name'] },
);

/** Labels a node must have (matched against its Node object). */
export const nodeSelectorSchema = record(
  str({
    description: 'A label value.',
    maxLength: 63,
    pattern: '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$',
  }),
  {
    description:
      'Labels the node must have; matched against Node objects (a Node object must exist).',
    maxProperties: 32,
  },
);

export const specSchema = obj(
  {
    nodeName: str({
      description:
        'Pin the sandbox to this node (its node agent must be alive and have capacity). ' +
        'Unset: the controller picks the least loaded fitting node.',
      maxLength: 253,
      pattern: DNS_SUBDOMAIN,
    }),
    nodeSelector: nodeSelectorSchema,
    hostname: str({
      description:
        'Hostname of the guest, a DNS label of at most 63 characters. Default (computed by the ' +
        'node agent, not stored here): metadata.name cut to 63 characters.',
      minLength: 1,
      maxLength: 63,
      pattern: DNS_LABEL,
    }),
    terminationGracePeriodSeconds: int({
      description:
        'Seconds between asking the containers to stop (SIGTERM) and killing them and the VM, ' +
        '0 to 86400.',
      minimum: 0,
      maximum: 86400,
      default: 30,
    }),
    restartPolicy: enumOf(['Never', 'OnFailure', 'Always'], {
      description:
        'Restart exited containers: Never, OnFailure (non-zero exit) or Always. Containers are ' +
        'restarted inside the VM; the VM itself is never restarted.',
      default: 'Never',
    }),
    vm: vmSpecSchema,
    network: networkSpecSchema,
    dns: dnsSpecSchema,
    volumes: mapList(volumeSchema, ['name'], {
      description: 'Volumes the containers can mount, names unique; at most 32.',
      maxItems: MAX_VOLUMES,
    }),
    containers: mapList(containerSpecSchema, ['name'], {
      description: 'The containers of the sandbox, names unique; 1 to 16.',
      minItems: 1,
      maxItems: MAX_CONTAINERS,
    }),
    imagePullSecrets: mapList(localObjectReferenceSchema, ['name'], {
      description: 'Secrets (kubernetes.io/dockerconfigjson) used to pull images; at most 16.',
      maxItems: 16,
    }),
  },
  {
    description:
      'Desired sandbox: a VM and its containers. Immutable after creation: a running VM cannot ' +
      'be reshaped, so delete and recreate the sandbox to change it.',
    required: ['containers'],
    validations: [
      {
        rule: 'self == oldSelf',
        message: 'spec is immutable: delete and recreate the sandbox to change it',
      },
      {
        rule:
          'self.containers.all(c, !has(c.volumeMounts) || c.volumeMounts.all(m, ' +
          'has(self.volumes) && self.volumes.exists(v, v.name == m.name)))',
        message: 'every containers[].volumeMounts[].name must name a volume in spec.volumes',
        fieldPath: '.containers',
      },
    ],
  },
);

// --- status -------------------------------------------------------------------------------------

const REASON = '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$';

export const conditionSchema = obj(
  {
    type: str({
      description: 'Type of the condition in CamelCase, e.g. Ready, Scheduled, VMReady.',
      maxLength: 316,
      pattern:
        '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?' +
        '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
    }),
    status: enumOf(['True', 'False', 'Unknown'], {
      description: 'Status of the condition: True, False or Unknown.',
    }),
    observedGeneration: int({
      description: 'metadata.generation the condition was set from.',
      minimum: 0,
      format: 'int64',
    }),
    lastTransitionTime: time('When the condition last changed status.'),
    reason: str({
      description: "The condition's last transition reason in CamelCase.",
      minLength: 1,
      maxLength: 1024,
      pattern: REASON,
    }),
    message: str({ description: 'Human-readable details of the transition.', maxLength: 32768 }),
  },
  {
    description: 'A condition, in the standard Kubernetes (metav1.Condition) shape.',
    required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
  },
);

export const vmStatusSchema = obj(
  {
    pid: int({ description: 'Process id of QEMU on the node.', minimum: 0, format: 'int64' }),
    accelerator: enumOf(['kvm', 'tcg'], { description: 'The accelerator QEMU runs with.' }),
    bootMillis: int({
      description: 'Milliseconds from QEMU start to the guest agent answering.',
      minimum: 0,
      format: 'int64',
    }),
    startedAt: time('When QEMU was started.'),
    warm: bool({
      description:
        'True when the sandbox took a VM a KataWarmPool had booted before it was created (no ' +
        'boot in its path); claimMillis then says how long taking it took.',
    }),
    warmPool: str({ description: 'The KataWarmPool the VM came from.', maxLength: 253 }),
    claimMillis: int({
      description:
        'Milliseconds to take the warm VM: its share, network and devices attached without a ' +
        'reboot.',
      minimum: 0,
      format: 'int64',
    }),
    warmMiss: str({
      description:
        'Why a VM was booted although a KataWarmPool on the node could have served the sandbox ' +
        '(e.g. no ready VM of its shape, or devices a warm VM cannot take).',
      maxLength: 1024,
    }),
  },
  { description: 'The running VM, as seen by the node agent.' },
);

export const interfaceStatusSchema = obj(
  {
    name: str({ description: 'Interface name in the guest, e.g. eth0.', maxLength: 15 }),
    mac: str({ description: 'MAC address.', maxLength: 17 }),
    addresses: arr(str({ description: 'An address in CIDR form.', maxLength: 64 }), {
      description: 'Addresses in CIDR form, e.g. 10.0.0.2/24.',
      maxItems: 16,
    }),
    mtu: int({ description: 'MTU of the interface.', minimum: 0, maximum: 65536 }),
  },
  { description: 'A network interface of the guest.', required: ['name'] },
);

export const routeStatusSchema = obj(
  {
    dest: str({ description: 'Destination in CIDR form, or "default".', maxLength: 64 }),
    gateway: str({ description: 'Gateway address; empty for on-link routes.', maxLength: 64 }),
    device: str({ description: 'Interface of the route.', maxLength: 15 }),
  },
  { description: 'A route of the guest.' },
);

export const containerStatusSchema = obj(
  {
    name: dnsLabel('Name of the container (spec.containers[].name).'),
    state: enumOf(['Waiting', 'Running', 'Exited'], {
      description: 'State of the container: Waiting, Running or Exited.',
    }),
    exitCode: int({ description: 'Exit code of the last run, once Exited.', format: 'int32' }),
    reason: str({
      description: 'Why the container is in its state, in CamelCase.',
      maxLength: 1024,
    }),
    message: str({ description: 'Human-readable details.', maxLength: 32768 }),
    startedAt: time('When the current or last run started.'),
    finishedAt: time('When the last run ended.'),
    restartCount: int({
      description: 'How many times the container has been restarted.',
      minimum: 0,
      maximum: 2147483647,
    }),
  },
  { description: 'The state of one container.', required: ['name', 'state'] },
);

export const PHASES = [
  'Pending',
  'Scheduled',
  'Creating',
  'Running',
  'Succeeded',
  'Failed',
  'Terminating',
] as const;

export const statusSchema = obj(
  {
    phase: enumOf(PHASES, {
      description:
        'Summary of the sandbox lifecycle, derived by the controller from the conditions: ' +
        'Pending, Scheduled, Creating, Running, Succeeded, Failed or Terminating.',
    }),
    reason: str({
      description: 'CamelCase reason for the phase, e.g. Unschedulable, NodeLost, VMExited.',
      maxLength: 1024,
    }),
    message: str({ description: 'Human-readable details of the phase.', maxLength: 32768 }),
    nodeName: str({
      description: 'The node the sandbox was scheduled to (set by the controller).',
      maxLength: 253,
    }),
    observedGeneration: int({
      description: 'metadata.generation the controller last acted on.',
      minimum: 0,
      format: 'int64',
    }),
    conditions: mapList(conditionSchema, ['type'], {
      description:
        'Conditions, one per type: Scheduled (controller); VMReady, AgentConnected, ' +
        'NetworkReady, ContainersReady, Ready, Terminated (node agent).',
      maxItems: 32,
    }),
    vm: vmStatusSchema,
    network: obj(
      {
        interfaces: mapList(interfaceStatusSchema, ['name'], {
          description: 'Interfaces of the guest.',
          maxItems: 16,
        }),
        routes: arr(routeStatusSchema, { description: 'Routes of the guest.', maxItems: 64 }),
      },
      { description: 'The guest network, as configured by the node agent.' },
    ),
    containers: mapList(containerStatusSchema, ['name'], {
      description: 'State of each container, keyed by name.',
      maxItems: MAX_CONTAINERS,
    }),
  },
  {
    description:
      'Observed state: phase, reason, message, nodeName and the Scheduled condition are written by ' +
      'the controller; the other conditions, vm, network and containers by the node agent of ' +
      'status.nodeName.',
  },
);

// --- types --------------------------------------------------------------------------------------

export type VmSpec = Infer<typeof vmSpecSchema>;
export type NetworkSpec = Infer<typeof networkSpecSchema>;
export type DnsSpec = Infer<typeof dnsSpecSchema>;
export type Volume = Infer<typeof volumeSchema>;
export type RootfsSpec = Infer<typeof rootfsSchema>;
export type EnvVar = Infer<typeof envVarSchema>;
export type VolumeMount = Infer<typeof volumeMountSchema>;
export type DeviceSpec = Infer<typeof deviceSchema>;
export type ContainerSpec = Infer<typeof containerSpecSchema>;
export type KataSandboxSpec = Infer<typeof specSchema>;
export type Condition = Infer<typeof conditionSchema>;
export type ConditionStatus = Condition['status'];
export type VmStatus = Infer<typeof vmStatusSchema>;
export type InterfaceStatus = Infer<typeof interfaceStatusSchema>;
export type RouteStatus = Infer<typeof routeStatusSchema>;
export type ContainerStatus = Infer<typeof containerStatusSchema>;
export type ContainerState = ContainerStatus['state'];
export type KataSandboxStatus = Infer<typeof statusSchema>;
/** status.network: the guest's interfaces and routes as its agent lists them. */
export type NetworkStatus = NonNullable<KataSandboxStatus['network']>;
export type Phase = (typeof PHASES)[number];

export interface KataSandbox {
  apiVersion: 'kata.sandbox.io/v1alpha1';
  kind: 'KataSandbox';
  metadata: V1ObjectMeta;
  spec: KataSandboxSpec;
  status?: KataSandboxStatus;
}

export interface KataSandboxList {
  apiVersion: 'kata.sandbox.io/v1alpha1';
  kind: 'KataSandboxList';
  metadata: V1ListMeta;
  items: KataSandbox[];
}

// The node agent's configuration: flags win over environment variables, which win over an
// optional JSON config file (a ConfigMap in the cluster), which wins over the defaults.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DEFAULT_CNI_BIN_DIRS, DEFAULT_CNI_CONF_DIR } from './network/cni.js';
import { DEFAULT_NETNS_ROOTS } from './network/netns-path.js';
import { metricsCertProblem } from '../observability/metrics-serving-config.js';
import { ConfigError, convertSetting, type SettingKind } from './config-value.js';
import type { MachineSetting } from './hypervisor/machine-type.js';
import { TCG_TRANSLATION_CACHE_MIB } from './hypervisor/qemu-args.js';

export { ConfigError };

export type AcceleratorSetting = 'auto' | 'kvm' | 'tcg';

export interface NodeAgentConfig {
  nodeName: string;
  kubeconfig?: string;
  stateDir: string;
  runDir: string;
  logDir: string;
  allowedHostPathRoots: string[];
  /** Roots block devices (rootfs.block.path, devices[].hostPath) may be under, besides the above. */
  allowedDeviceRoots: string[];
  /** Roots spec.network.netnsPath must be under (mode netns). */
  netnsRoots: string[];
  /** CNI (mode cni): network config dir, plugin dirs, network name, the namespace plugins run in. */
  cniConfDir: string;
  cniBinDirs: string[];
  cniNetwork?: string;
  cniNodeNetns?: string;
  /** Guest image directory; default: the `make guest` cache's `current`. */
  guestImageDir?: string;
  qemuBinary: string;
  /** kata-host-fs: opens host paths beneath their roots, hands QEMU descriptors, makes binds. */
  hostFsBinary: string;
  /** systemd-scope: each QEMU in its own transient scope when the host runs systemd (else detached). */
  qemuLaunch: 'detached' | 'systemd-scope';
  /** Where cgroup hierarchies are mounted (the host's, mounted in, when in a Pod). */
  cgroupRoot: string;
  /** Each VM in <hierarchy>/<this>/<uid>, outside the agent's cgroups (detached launch); none: off. */
  vmCgroupParent: string;
  /** QEMU's own memory above the guest's, in the VM cgroup's limit. */
  vmMemoryOverheadMiB: number;
  /** Each TCG VM's translation cache (`-accel tcg,tb-size=`), also in its cgroup's limit. */
  tcgTranslationCacheMiB: number;
  defaultAccelerator: AcceleratorSetting;
  /**
   * QEMU's machine type for every VM, or auto: microvm for a sandbox's own VM (faster boot, no
   * hot-plug needed), pc for warm-pool VMs (claims hot-plug drives and NICs).
   */
  machineType: MachineSetting;
  maxSandboxes: number;
  memoryMiB: number;
  /** The stream endpoint for kata-api (logs): bind address ('' = streamAddress), port (0 picks one), published host. */
  streamBindAddress: string;
  streamPort: number;
  streamAddress: string;
  metricsPort: number;
  /** HTTPS with TokenReview + SubjectAccessReview on /metrics; false: plain HTTP on 127.0.0.1. */
  metricsSecure: boolean;
  metricsCertFile?: string;
  metricsKeyFile?: string;
  concurrency: number;
  /** Boot deadline: QEMU start → agent answering. */
  bootTimeoutMs: number;
  /** Per container log file cap before rotation, and rotated files kept. */
  logMaxBytes: number;
  logMaxFiles: number;
  /** The node's image cache (unpacked images by digest; default <stateDir>/images), its limit. */
  imageCacheDir?: string;
  imageCacheMaxBytes: number;
  /** host[:port] of registries spoken to over plain HTTP (or TLS without verification). */
  insecureRegistries: string[];
  /** host[:port] (glob labels) of the only registries images come from; empty: any. */
  allowedRegistries: string[];
  /** Deadline of one image download + unpack. */
  imagePullTimeoutMs: number;
  /** First retry delay after a failed pull; doubles up to 300 s (kubelet's ImagePullBackOff). */
  imagePullBackoffMs: number;
  /** How often running sandboxes' taps and redirects are checked (NetworkLost). */
  networkCheckMs: number;
  /** How often each running sandbox's guest is asked for its figures (per-sandbox metrics). */
  guestStatsMs: number;
  help: boolean;
}

interface Option {
  flag: string;
  env: string;
  key: keyof NodeAgentConfig;
  kind: SettingKind;
  /** A list that may be empty. */
  emptyOk?: boolean;
  doc: string;
}

const OPTIONS: readonly Option[] = [
  {
    flag: 'node-name',
    env: 'NODE_NAME',
    key: 'nodeName',
    kind: 'string',
    doc: 'this node (required; the downward API in a cluster)',
  },
  {
    flag: 'kubeconfig',
    // Not KUBECONFIG: a root shell's KUBECONFIG may be an admin's; this one is set on purpose.
    env: 'NODE_AGENT_KUBECONFIG',
    key: 'kubeconfig',
    kind: 'string',
    doc: 'kubeconfig; default: in-cluster in a Pod (KUBERNETES_SERVICE_HOST set), else required (never ~/.kube/config)',
  },
  {
    flag: 'state-dir',
    env: 'STATE_DIR',
    key: 'stateDir',
    kind: 'string',
    doc: 'per-sandbox state files (default /var/lib/kata-node-agent)',
  },
  {
    flag: 'run-dir',
    env: 'RUN_DIR',
    key: 'runDir',
    kind: 'string',
    doc: 'sockets and shared dirs (default /run/kata-node-agent)',
  },
  {
    flag: 'log-dir',
    env: 'LOG_DIR',
    key: 'logDir',
    kind: 'string',
    doc: 'container logs (default /var/log/kata-sandboxes)',
  },
  {
    flag: 'allowed-host-path-roots',
    env: 'ALLOWED_HOST_PATH_ROOTS',
    key: 'allowedHostPathRoots',
    kind: 'list',
    doc: 'comma-separated roots host paths must stay under (default /var/lib/kata-rootfs,/srv)',
  },
  {
    flag: 'allowed-device-roots',
    env: 'ALLOWED_DEVICE_ROOTS',
    key: 'allowedDeviceRoots',
    kind: 'list',
    emptyOk: true,
    doc: 'comma-separated dirs block devices may resolve under, e.g. /dev (default none)',
  },
  {
    flag: 'netns-roots',
    env: 'NETNS_ROOTS',
    key: 'netnsRoots',
    kind: 'list',
    doc: 'roots spec.network.netnsPath must be under (default /run/netns,/var/run/netns)',
  },
  {
    flag: 'cni-conf-dir',
    env: 'CNI_CONF_DIR',
    key: 'cniConfDir',
    kind: 'string',
    doc: 'CNI network configs for mode cni (default /etc/cni/net.d)',
  },
  {
    flag: 'cni-bin-dirs',
    env: 'CNI_BIN_DIRS',
    key: 'cniBinDirs',
    kind: 'list',
    doc: 'CNI plugin dirs (default /opt/cni/bin,/usr/lib/cni)',
  },
  {
    flag: 'cni-network',
    env: 'CNI_NETWORK',
    key: 'cniNetwork',
    kind: 'string',
    doc: 'CNI network name to use (default: the first config file)',
  },
  {
    flag: 'cni-node-netns',
    env: 'CNI_NODE_NETNS',
    key: 'cniNodeNetns',
    kind: 'string',
    doc: "namespace the CNI plugins run in (default: the agent's own)",
  },
  {
    flag: 'guest-image-dir',
    env: 'GUEST_IMAGE_DIR',
    key: 'guestImageDir',
    kind: 'string',
    doc: "guest image (vmlinux/vmlinuz, initrd); default: make guest's cache",
  },
  {
    flag: 'qemu-binary',
    env: 'QEMU_BINARY',
    key: 'qemuBinary',
    kind: 'string',
    doc: 'QEMU to run (default qemu-system-x86_64)',
  },
  {
    flag: 'host-fs-binary',
    env: 'HOST_FS_BINARY',
    key: 'hostFsBinary',
    kind: 'string',
    doc: 'the kata-host-fs helper (host paths opened once, beneath their roots) (default /usr/local/bin/kata-host-fs)',
  },
  {
    flag: 'qemu-launch',
    env: 'QEMU_LAUNCH',
    key: 'qemuLaunch',
    kind: 'launch',
    doc: 'detached, or systemd-scope (a transient scope per VM on a systemd host, so VMs outlive the agent container; needs hostPID and the host /run/systemd) (default detached)',
  },
  {
    flag: 'cgroup-root',
    env: 'CGROUP_ROOT',
    key: 'cgroupRoot',
    kind: 'string',
    doc: 'where the cgroup hierarchies are mounted; in a Pod, the host /sys/fs/cgroup mounted in (default /sys/fs/cgroup)',
  },
  {
    flag: 'vm-cgroup-parent',
    env: 'VM_CGROUP_PARENT',
    key: 'vmCgroupParent',
    kind: 'cgroupParent',
    doc: "each VM in a cgroup <parent>/<sandbox uid> of every hierarchy, its memory limited there; none: QEMU stays in the agent's cgroups (default kata-sandboxes)",
  },
  {
    flag: 'vm-memory-overhead-mib',
    env: 'VM_MEMORY_OVERHEAD_MIB',
    key: 'vmMemoryOverheadMiB',
    kind: 'int',
    doc: "QEMU's own memory on top of the guest's, in each VM cgroup's limit (default 256)",
  },
  {
    flag: 'tcg-translation-cache-mib',
    env: 'TCG_TRANSLATION_CACHE_MIB',
    key: 'tcgTranslationCacheMiB',
    kind: 'int',
    doc: "each TCG VM's translation cache, 16–4096, counted in its cgroup's limit (default 128)",
  },
  {
    flag: 'default-accelerator',
    env: 'DEFAULT_ACCELERATOR',
    key: 'defaultAccelerator',
    kind: 'accel',
    doc: 'auto, kvm or tcg, for sandboxes asking auto (default auto)',
  },
  {
    flag: 'machine-type',
    env: 'MACHINE_TYPE',
    key: 'machineType',
    kind: 'machine',
    doc: "QEMU's machine type: auto (microvm for sandboxes' own VMs, pc for warm-pool VMs, which take hot-plugged drives and NICs), or pc, q35 or microvm for every VM (microvm and q35 cannot hot-plug, so their warm VMs serve only sandboxes without block drives or network) (default auto)",
  },
  {
    flag: 'max-sandboxes',
    env: 'MAX_SANDBOXES',
    key: 'maxSandboxes',
    kind: 'int',
    doc: 'capacity advertised in the Lease (default 16)',
  },
  {
    flag: 'memory-mib',
    env: 'MEMORY_MIB',
    key: 'memoryMiB',
    kind: 'int',
    doc: 'memory capacity advertised in the Lease (default 8192)',
  },
  {
    flag: 'stream-port',
    env: 'STREAM_PORT',
    key: 'streamPort',
    kind: 'int',
    doc: 'port of the stream endpoint kata-api reads logs from; 0 picks one (default 0)',
  },
  {
    flag: 'stream-bind-address',
    env: 'STREAM_BIND_ADDRESS',
    key: 'streamBindAddress',
    kind: 'string',
    doc: 'address the stream endpoint listens on (default: --stream-address)',
  },
  {
    flag: 'stream-address',
    env: 'STREAM_ADDRESS',
    key: 'streamAddress',
    kind: 'string',
    doc: 'host kata-api reaches the stream endpoint at, published on the Lease (default 127.0.0.1)',
  },
  {
    flag: 'metrics-port',
    env: 'METRICS_PORT',
    key: 'metricsPort',
    kind: 'int',
    doc: 'port of /metrics, /healthz, /readyz; 0 picks one (default 8081)',
  },
  {
    flag: 'metrics-secure',
    env: 'METRICS_SECURE',
    key: 'metricsSecure',
    kind: 'bool',
    doc: 'HTTPS on every address, /metrics only for a bearer token allowed to get the non-resource URL /metrics (TokenReview + SubjectAccessReview); false: plain HTTP on 127.0.0.1, no authentication, for local use (default true)',
  },
  {
    flag: 'metrics-cert-file',
    env: 'METRICS_CERT_FILE',
    key: 'metricsCertFile',
    kind: 'string',
    doc: 'PEM serving certificate for /metrics, re-read when it changes (default: a self-signed one made at start)',
  },
  {
    flag: 'metrics-key-file',
    env: 'METRICS_KEY_FILE',
    key: 'metricsKeyFile',
    kind: 'string',
    doc: 'its PEM private key',
  },
  {
    flag: 'concurrency',
    env: 'CONCURRENCY',
    key: 'concurrency',
    kind: 'int',
    doc: 'sandboxes reconciled at once (default 4)',
  },
  {
    flag: 'boot-timeout-ms',
    env: 'BOOT_TIMEOUT_MS',
    key: 'bootTimeoutMs',
    kind: 'int',
    doc: 'QEMU start → agent answering deadline (default 180000)',
  },
  {
    flag: 'log-max-bytes',
    env: 'LOG_MAX_BYTES',
    key: 'logMaxBytes',
    kind: 'int',
    doc: 'container log size before rotation (default 10485760)',
  },
  {
    flag: 'log-max-files',
    env: 'LOG_MAX_FILES',
    key: 'logMaxFiles',
    kind: 'int',
    doc: 'rotated container log files kept (default 3)',
  },
  {
    flag: 'image-cache-dir',
    env: 'IMAGE_CACHE_DIR',
    key: 'imageCacheDir',
    kind: 'string',
    doc: 'node image cache, unpacked by digest (default <state-dir>/images)',
  },
  {
    flag: 'image-cache-max-bytes',
    env: 'IMAGE_CACHE_MAX_BYTES',
    key: 'imageCacheMaxBytes',
    kind: 'int',
    doc: 'cache size above which images no sandbox uses are evicted, least recently used first (default 21474836480)',
  },
  {
    flag: 'insecure-registries',
    env: 'INSECURE_REGISTRIES',
    key: 'insecureRegistries',
    kind: 'hosts',
    emptyOk: true,
    doc: 'comma-separated host[:port] of registries pulled over plain HTTP (default none)',
  },
  {
    flag: 'allowed-registries',
    env: 'ALLOWED_REGISTRIES',
    key: 'allowedRegistries',
    kind: 'registries',
    emptyOk: true,
    doc: 'comma-separated host[:port] (labels may be globs: *.example.com) images may come from (default any)',
  },
  {
    flag: 'image-pull-timeout-ms',
    env: 'IMAGE_PULL_TIMEOUT_MS',
    key: 'imagePullTimeoutMs',
    kind: 'int',
    doc: 'deadline of one image download and unpack (default 600000)',
  },
  {
    flag: 'image-pull-backoff-ms',
    env: 'IMAGE_PULL_BACKOFF_MS',
    key: 'imagePullBackoffMs',
    kind: 'int',
    doc: 'first retry delay after a failed pull, doubling to 300000 (default 10000)',
  },
  {
    flag: 'network-check-ms',
    env: 'NETWORK_CHECK_MS',
    key: 'networkCheckMs',
    kind: 'int',
    doc: "interval of the check that running sandboxes' taps and tc redirects are still there; 0 turns it off (default 15000)",
  },
  {
    flag: 'guest-stats-ms',
    env: 'GUEST_STATS_MS',
    key: 'guestStatsMs',
    kind: 'int',
    doc: "interval at which each running sandbox's guest is asked for its memory and its containers' CPU, memory and network figures (the kata_node_sandbox_guest_* and *_container_* metrics); 0 turns it off (default 15000)",
  },
];

export const NODE_AGENT_HELP = `kata-node-agent: runs the KataSandboxes scheduled to this node as QEMU VMs.

Flags (environment variable in brackets; a flag wins over the environment, which wins over
the config file):
  --config PATH         JSON file with any of the settings below by their camelCase names
                        (e.g. {"stateDir": "...", "allowedHostPathRoots": ["/srv"]}) [CONFIG]
${nodeAgentFlagHelp()}
  --help                this text
`;

/** Help lines of the node agent's flags (all, or those named), for tools that take the same ones. */
export function nodeAgentFlagHelp(only?: readonly string[]): string {
  return OPTIONS.filter((o) => !only || only.includes(o.flag))
    .map((o) => `  --${o.flag.padEnd(27)} ${o.doc} [${o.env}]`)
    .join('\n');
}

export const DEFAULTS: Omit<NodeAgentConfig, 'nodeName' | 'help'> = {
  stateDir: '/var/lib/kata-node-agent',
  runDir: '/run/kata-node-agent',
  logDir: '/var/log/kata-sandboxes',
  allowedHostPathRoots: ['/var/lib/kata-rootfs', '/srv'],
  allowedDeviceRoots: [],
  netnsRoots: [...DEFAULT_NETNS_ROOTS],
  cniConfDir: DEFAULT_CNI_CONF_DIR,
  cniBinDirs: [...DEFAULT_CNI_BIN_DIRS],
  qemuBinary: 'qemu-system-x86_64',
  hostFsBinary: '/usr/local/bin/kata-host-fs',
  qemuLaunch: 'detached',
  cgroupRoot: '/sys/fs/cgroup',
  vmCgroupParent: 'kata-sandboxes',
  vmMemoryOverheadMiB: 256,
  tcgTranslationCacheMiB: TCG_TRANSLATION_CACHE_MIB,
  defaultAccelerator: 'auto',
  machineType: 'auto',
  maxSandboxes: 16,
  memoryMiB: 8192,
  streamPort: 0,
  streamBindAddress: '',
  streamAddress: '127.0.0.1',
  metricsPort: 8081,
  metricsSecure: true,
  concurrency: 4,
  bootTimeoutMs: 180_000,
  logMaxBytes: 10 * 1024 * 1024,
  logMaxFiles: 3,
  imageCacheMaxBytes: 20 * 1024 * 1024 * 1024,
  insecureRegistries: [],
  allowedRegistries: [],
  imagePullTimeoutMs: 600_000,
  imagePullBackoffMs: 10_000,
  networkCheckMs: 15_000,
  guestStatsMs: 15_000,
};

function readConfigFile(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`--config ${file}: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`--config ${file}: not a JSON object`);
  }
  const known = new Set<string>(OPTIONS.map((o) => o.key));
  for (const k of Object.keys(parsed)) {
    if (!known.has(k))
      throw new ConfigError(`--config ${file}: unknown setting ${JSON.stringify(k)}`);
  }
  return parsed as Record<string, unknown>;
}

/** Parses argv + env (+ the config file they name); throws ConfigError naming the bad setting. */
export function nodeAgentConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  readFile: (file: string) => Record<string, unknown> = readConfigFile,
): NodeAgentConfig {
  return parseNodeAgentSettings(argv, env, { readFile }).config;
}

/**
 * The node agent's settings read exactly as it reads them, plus a tool's own flags (`extra`), so
 * a tool on the node (kata-leak-audit) never finds the roots anywhere else than the agent does.
 */
export function parseNodeAgentSettings(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  opts: {
    extra?: NonNullable<ParseArgsConfig['options']>;
    requireNodeName?: boolean;
    readFile?: (file: string) => Record<string, unknown>;
  } = {},
): { config: NodeAgentConfig; extra: Record<string, string | boolean | undefined> } {
  const readFile = opts.readFile ?? readConfigFile;
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...opts.extra,
      config: { type: 'string' },
      help: { type: 'boolean' },
      ...Object.fromEntries(OPTIONS.map((o) => [o.flag, { type: 'string' as const }])),
    },
    strict: true,
  });
  const flags = values as Record<string, string | boolean | undefined>;
  const help = flags['help'] === true;
  const configFile = (flags['config'] as string | undefined) ?? env['CONFIG'];
  const file = configFile ? readFile(configFile) : {};
  const out: Record<string, unknown> = { ...DEFAULTS, help };
  for (const o of OPTIONS) {
    const flag = flags[o.flag];
    if (typeof flag === 'string') out[o.key] = convertSetting(o, flag, `--${o.flag}`);
    else if (env[o.env] !== undefined && env[o.env] !== '') {
      out[o.key] = convertSetting(o, env[o.env], o.env);
    } else if (file[o.key] !== undefined) {
      out[o.key] = convertSetting(o, file[o.key], `${configFile} ${o.key}`);
    }
  }
  if (!help && !out['nodeName'] && opts.requireNodeName !== false) {
    throw new ConfigError('--node-name (or NODE_NAME) is required');
  }
  out['concurrency'] = Math.max(1, out['concurrency'] as number);
  const cfg = out as unknown as NodeAgentConfig;
  const certProblem = metricsCertProblem(cfg);
  if (certProblem) throw new ConfigError(certProblem);
  const tb = cfg.tcgTranslationCacheMiB;
  if (!Number.isInteger(tb) || tb < 16 || tb > 4096) {
    throw new ConfigError(`--tcg-translation-cache-mib: ${tb} is not between 16 and 4096`);
  }
  const extra = Object.fromEntries(Object.keys(opts.extra ?? {}).map((k) => [k, flags[k]]));
  return { config: cfg, extra };
}

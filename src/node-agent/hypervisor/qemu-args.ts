// The QEMU command line, built from a typed config by a pure function: no shell ever sees it, and
// every value that lands inside a QEMU option string is validated or escaped here.
import path from 'node:path';
import { InvalidInputError } from '../../agent/errors.js';
import { virtioBlkSerial } from './block-serial.js';
import {
  AGENT_CHANNEL_NAME,
  GUEST_ROOT_DRIVE_SERIAL,
  SHARED_MOUNT_TAG,
} from '../../agent/contract.js';

export type MachineType = 'pc' | 'q35' | 'microvm';
export const MACHINE_TYPES: readonly MachineType[] = ['pc', 'q35', 'microvm'];

/**
 * microvm's own switches. The node agent uses MICROVM_DEFAULTS; bench/machine-boots.ts compares
 * the others (docs/performance.md, "Machine type", has the figures).
 */
export interface MicrovmOptions {
  /**
   * ACPI tables describe the virtio-mmio devices and let `poweroff -f` end QEMU. Off, QEMU appends
   * `virtio_mmio.device=` to the command line instead, and a guest powering off only halts.
   */
  acpi: boolean;
  /**
   * The legacy i8254 PIT: the kernel's only reference to calibrate the TSC against on microvm
   * (no HPET, no ACPI PM timer); without it and without tsc_early_khz the boot stalls.
   */
  pit: boolean;
  /** The i8259 PIC (the IO-APIC routes every interrupt anyway). */
  pic: boolean;
  /** The MC146818 RTC: the guest's wall clock at boot (off: it starts in 1970). */
  rtc: boolean;
}

export const MICROVM_DEFAULTS: Readonly<MicrovmOptions> = {
  acpi: true,
  pit: true,
  pic: true,
  rtc: true,
};
export type Accelerator = 'kvm' | 'tcg';

/** The TCG translation cache each VM gets (`-accel tcg,tb-size=`; vm-memory-limit.ts says why). */
export const TCG_TRANSLATION_CACHE_MIB = 128;

export const SHARE_MOUNT_TAG = SHARED_MOUNT_TAG;
export const QMP_CHARDEV_ID = 'qmp';
export const CONSOLE_CHARDEV_ID = 'con0';
export const SHARE_FSDEV_ID = 'fs0';
export const VIRTIO_SERIAL_ID = 'serial0';
/** QEMU's ids for the agent's virtio-serial port and the chardev socket behind it. */
export const AGENT_CHARDEV_ID = 'charch0';
export const AGENT_PORT_ID = 'channel0';

/**
 * A drive QEMU gets as an inherited descriptor: `-add-fd fd=N,set=S` and `/dev/fdset/S`, so it
 * never resolves the host path itself. The descriptor's access mode must match `readOnly`
 * (QEMU picks a descriptor of the set by access mode).
 */
export interface DriveFd {
  /** The descriptor number QEMU inherits (>= 3). */
  fd: number;
  /** The fd set id (>= 0). */
  set: number;
  /** Image file (QEMU's `file` driver) or block device (`host_device`). */
  type: 'file' | 'block';
}

export interface DriveConfig {
  /** Host file or block device (absolute): what QEMU opens unless `fd` is given (then for messages only). */
  path: string;
  /** The drive as an inherited descriptor instead of a path (the node agent always uses this). */
  fd?: DriveFd;
  /** The container or device id; the drive's virtio serial is derived from it (virtioBlkSerial). */
  serialId: string;
  readOnly?: boolean;
  format?: 'raw' | 'qcow2';
  /** `none` (O_DIRECT) keeps the host page cache out of the way; tmpfs refuses it, hence the choice. */
  cache?: 'none' | 'writeback' | 'unsafe';
}

export interface NicConfig {
  /** Tap device name (≤ 15 characters), already created in the netns QEMU runs in. */
  tap: string;
  /** The interface's MAC (the veth's), unicast, lower or upper case. */
  mac: string;
}

/**
 * The guest's root filesystem as a read-only drive instead of an initrd: the image's
 * rootfs.erofs, booted with root=/dev/vda (it is the first virtio-blk device on the bus).
 */
export interface RootDiskConfig {
  /** The image file (absolute; the node's own guest image, opened read-only by QEMU). */
  path: string;
  fsType: 'erofs';
}

export interface VmConfig {
  /** Shown in `ps` and QMP; letters, digits, '-', '_', '.'. */
  name: string;
  machine: MachineType;
  /** microvm only: overrides of MICROVM_DEFAULTS. */
  microvm?: Partial<MicrovmOptions>;
  accelerator: Accelerator;
  /**
   * microvm under TCG only: the guest TSC's rate in kHz (under TCG it is the host's TSC), given
   * to the kernel as `tsc_early_khz` so it never calibrates the TSC against the PIT: that
   * calibration fails now and then on a busy host, and microvm has no HPET or PM timer to fall
   * back to, so the boot then stalls in calibrate_delay. host-tsc.ts reads it.
   */
  tscKhz?: number;
  /** Defaults: `host` under KVM, QEMU's default model under TCG (`max` costs boot time under TCG). */
  cpu?: string;
  /** TCG only: `single` runs vCPUs and device emulation on one thread. */
  tcgThread?: 'single' | 'multi';
  /** TCG only: the translation cache in MiB (vm-memory-limit.ts says why it is bounded). */
  tcgTranslationCacheMiB?: number;
  vcpus: number;
  memoryMiB: number;
  kernel: string;
  initrd?: string;
  /** Boot from this read-only root drive (with `initrd` unset: the two are exclusive). */
  rootDisk?: RootDiskConfig;
  /** Added after the defaults (console, panic=-1, quiet). Each item one kernel parameter. */
  kernelParams?: readonly string[];
  /** Replace the default kernel parameters entirely (console= included). */
  replaceDefaultKernelParams?: boolean;
  /** Firmware image; QEMU's own default when unset (SeaBIOS on pc/q35, bios-microvm.bin on microvm). */
  bios?: string;
  /**
   * The console's output goes to `logFile`; with `socket`, QEMU also listens there (a chardev
   * socket whose `logfile` is `logFile`, appended to) so the console takes input.
   */
  console: { logFile: string; socket?: string; kind?: 'serial' | 'virtconsole' };
  qmpSocket: string;
  /** The virtio-serial agent channel's chardev socket (QEMU listens, the node agent connects). */
  agentChannelSocket?: string;
  /** Host directory shared with the guest over 9p as mount tag `kataShared`. */
  sharedDir?: string;
  drives?: readonly DriveConfig[];
  nics?: readonly NicConfig[];
  pidFile?: string;
}

const ID = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/;
const TAP = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
const CPU_MODEL = /^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.+=-]+)*$/;
const KERNEL_PARAM = /^[^\s\0]+$/;

function checkPath(field: string, p: string): string {
  if (!path.isAbsolute(p)) {
    throw new InvalidInputError(field, `${JSON.stringify(p)} is not an absolute path`);
  }
  // A newline or NUL cannot reach QEMU intact through argv and would confuse logs and parsers.
  if (/[\0\n\r]/.test(p)) {
    throw new InvalidInputError(field, `${JSON.stringify(p)} contains a NUL or newline`);
  }
  return p;
}

/** A value inside a QEMU option string (`key=value,...`): a literal comma is written `,,`. */
export function escapeOptionValue(value: string): string {
  return value.replace(/,/g, ',,');
}

function optPath(field: string, p: string): string {
  return escapeOptionValue(checkPath(field, p));
}

function checkInt(field: string, n: number, min: number, max: number): number {
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new InvalidInputError(field, `${n} is not an integer in [${min}, ${max}]`);
  }
  return n;
}

/** The kernel parameters the guest boots with: ours first, then the caller's. */
export function kernelCommandLine(config: VmConfig): string {
  const consoleDev = (config.console.kind ?? 'serial') === 'serial' ? 'ttyS0' : 'hvc0';
  // panic=-1 + QEMU's -no-reboot: a guest that panics (a broken initrd) ends QEMU at once, so a
  // failed boot is seen in seconds instead of at the deadline.
  const defaults = config.replaceDefaultKernelParams
    ? []
    : [`console=${consoleDev}`, 'panic=-1', 'quiet', 'tsc=reliable', 'no_timer_check'];
  // pc and q35 need it not: their HPET and PM timer are the calibration's fallback references.
  const tcgMicrovm = config.machine === 'microvm' && config.accelerator === 'tcg';
  if (!config.replaceDefaultKernelParams && tcgMicrovm && config.tscKhz !== undefined) {
    defaults.push(`tsc_early_khz=${checkInt('tscKhz', config.tscKhz, 1_000, 100_000_000)}`);
  }
  if (config.rootDisk) {
    // init=/init: the image's PID 1 is /init, as in the initrd (the kernel's default is /sbin/init).
    defaults.push('root=/dev/vda', `rootfstype=${config.rootDisk.fsType}`, 'ro', 'init=/init');
  }
  const extra = config.kernelParams ?? [];
  extra.forEach((p, i) => {
    if (!KERNEL_PARAM.test(p)) {
      throw new InvalidInputError(
        `kernelParams[${i}]`,
        `${JSON.stringify(p)} is empty or contains whitespace or NUL`,
      );
    }
  });
  return [...defaults, ...extra].join(' ');
}

/** `-machine microvm,...` with MICROVM_DEFAULTS overridden by `options`. */
export function microvmMachineOption(options: Partial<MicrovmOptions> = {}): string {
  const o = { ...MICROVM_DEFAULTS, ...options };
  const onOff = (b: boolean): string => (b ? 'on' : 'off');
  for (const k of ['acpi', 'pit', 'pic', 'rtc'] as const) {
    if (typeof o[k] !== 'boolean') throw new InvalidInputError(`microvm.${k}`, 'is not a boolean');
  }
  return `microvm,acpi=${onOff(o.acpi)},pit=${onOff(o.pit)},pic=${onOff(o.pic)},rtc=${onOff(o.rtc)}`;
}

/** Every QEMU argument after the binary name. Throws InvalidInputError on any unsafe input. */
export function buildQemuArgs(config: VmConfig): string[] {
  if (!ID.test(config.name)) {
    throw new InvalidInputError(
      'name',
      `${JSON.stringify(config.name)} must start with a letter and use only letters, digits, '-', '_', '.' (≤ 63)`,
    );
  }
  const vcpus = checkInt('vcpus', config.vcpus, 1, 255);
  const mem = checkInt('memoryMiB', config.memoryMiB, 64, 1024 * 1024);
  const mmio = config.machine === 'microvm';
  const dev = (pciName: string): string => (mmio ? `${pciName}-device` : `${pciName}-pci`);

  const a: string[] = [];
  a.push('-name', `${config.name},debug-threads=on`);
  switch (config.machine) {
    case 'pc':
    case 'q35':
      a.push('-machine', config.machine);
      break;
    case 'microvm':
      a.push('-machine', microvmMachineOption(config.microvm));
      break;
    default:
      throw new InvalidInputError('machine', `${JSON.stringify(config.machine)} is not supported`);
  }
  if (config.accelerator === 'kvm') {
    a.push('-accel', 'kvm');
  } else if (config.accelerator === 'tcg') {
    const tbMiB = checkInt(
      'tcgTranslationCacheMiB',
      config.tcgTranslationCacheMiB ?? TCG_TRANSLATION_CACHE_MIB,
      16,
      4096,
    );
    const thread = config.tcgThread ? `,thread=${config.tcgThread}` : '';
    a.push('-accel', `tcg,tb-size=${tbMiB}${thread}`);
  } else {
    throw new InvalidInputError(
      'accelerator',
      `${JSON.stringify(config.accelerator)} is neither kvm nor tcg`,
    );
  }
  const cpu = config.cpu ?? (config.accelerator === 'kvm' ? 'host' : undefined);
  if (cpu !== undefined) {
    if (!CPU_MODEL.test(cpu)) {
      throw new InvalidInputError('cpu', `${JSON.stringify(cpu)} is not a CPU model`);
    }
    a.push('-cpu', cpu);
  }
  a.push('-smp', String(vcpus), '-m', `${mem}M`);
  a.push('-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot');
  a.push('-msg', 'timestamp=on');

  if (config.bios !== undefined) a.push('-bios', checkPath('bios', config.bios));
  a.push('-kernel', checkPath('kernel', config.kernel));
  if (config.initrd !== undefined && config.rootDisk !== undefined) {
    throw new InvalidInputError('rootDisk', 'a VM boots from an initrd or a root disk, not both');
  }
  if (config.initrd !== undefined) a.push('-initrd', checkPath('initrd', config.initrd));
  if (config.rootDisk !== undefined && config.rootDisk.fsType !== 'erofs') {
    throw new InvalidInputError(
      'rootDisk.fsType',
      `${JSON.stringify(config.rootDisk.fsType)} is not erofs`,
    );
  }
  a.push('-append', kernelCommandLine(config));

  // Console: a file, so it survives the node agent and its tail can explain a failed boot; with a
  // socket, the same file is the socket's log (appended to, so the node agent can cap it by
  // truncation) and a client of the socket types into the console.
  const consoleLog = optPath('console.logFile', config.console.logFile);
  a.push(
    '-chardev',
    config.console.socket === undefined
      ? `file,id=${CONSOLE_CHARDEV_ID},path=${consoleLog}`
      : `socket,id=${CONSOLE_CHARDEV_ID},path=${optPath('console.socket', config.console.socket)},` +
          `server=on,wait=off,logfile=${consoleLog},logappend=on`,
  );
  const virtconsole = config.console.kind === 'virtconsole';
  if (virtconsole) {
    if (mmio) {
      throw new InvalidInputError('console.kind', 'virtconsole is not supported on microvm here');
    }
  } else {
    a.push('-serial', `chardev:${CONSOLE_CHARDEV_ID}`);
  }

  // QMP: QEMU listens; wait=off so QEMU does not block at start for a client.
  a.push(
    '-chardev',
    `socket,id=${QMP_CHARDEV_ID},path=${optPath('qmpSocket', config.qmpSocket)},server=on,wait=off`,
  );
  a.push('-mon', `chardev=${QMP_CHARDEV_ID},mode=control`);

  if (config.rootDisk !== undefined) {
    // The first virtio device, so the guest probes it first and names it vda (root=/dev/vda);
    // read-only, and cached by the host so every VM of the node shares one copy of the image.
    const file = optPath('rootDisk.path', config.rootDisk.path);
    a.push(
      '-drive',
      `file=${file},if=none,id=drive-root,format=raw,readonly=on,cache=writeback,auto-read-only=off`,
    );
    a.push(
      '-device',
      `${dev('virtio-blk')},drive=drive-root,id=blk-root,serial=${GUEST_ROOT_DRIVE_SERIAL}`,
    );
  }

  if (config.agentChannelSocket !== undefined || virtconsole) {
    a.push('-device', `${dev('virtio-serial')},id=${VIRTIO_SERIAL_ID}`);
  }
  if (virtconsole) {
    a.push('-device', `virtconsole,chardev=${CONSOLE_CHARDEV_ID},id=console0`);
  }
  if (config.agentChannelSocket !== undefined) {
    const sock = optPath('agentChannelSocket', config.agentChannelSocket);
    a.push('-chardev', `socket,id=${AGENT_CHARDEV_ID},path=${sock},server=on,wait=off`);
    a.push(
      '-device',
      `virtserialport,bus=${VIRTIO_SERIAL_ID}.0,chardev=${AGENT_CHARDEV_ID},id=${AGENT_PORT_ID},name=${AGENT_CHANNEL_NAME}`,
    );
  }

  if (config.sharedDir !== undefined) {
    const dir = optPath('sharedDir', config.sharedDir);
    // multidevs=remap: the share holds bind mounts from several host filesystems; without it,
    // inode numbers from different devices can collide in the guest.
    a.push('-fsdev', `local,id=${SHARE_FSDEV_ID},path=${dir},security_model=none,multidevs=remap`);
    a.push('-device', `${dev('virtio-9p')},fsdev=${SHARE_FSDEV_ID},mount_tag=${SHARE_MOUNT_TAG}`);
  }

  (config.drives ?? []).forEach((d, n) => {
    const file = optPath(`drives[${n}].path`, d.path);
    const format = d.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') {
      throw new InvalidInputError(
        `drives[${n}].format`,
        `${JSON.stringify(format)} is not raw or qcow2`,
      );
    }
    const cache = d.cache ?? 'none';
    if (!['none', 'writeback', 'unsafe'].includes(cache)) {
      throw new InvalidInputError(
        `drives[${n}].cache`,
        `${JSON.stringify(cache)} is not supported`,
      );
    }
    let serial: string;
    try {
      serial = virtioBlkSerial(d.serialId);
    } catch (e) {
      throw new InvalidInputError(`drives[${n}].serialId`, (e as Error).message);
    }
    if (serial === GUEST_ROOT_DRIVE_SERIAL) {
      throw new InvalidInputError(`drives[${n}].serialId`, `${serial} is the guest root's serial`);
    }
    const ro = d.readOnly ? 'on' : 'off';
    if (d.fd) {
      const { fd, set, type } = d.fd;
      checkInt(`drives[${n}].fd.fd`, fd, 3, 1 << 20);
      checkInt(`drives[${n}].fd.set`, set, 0, 1 << 20);
      if (type !== 'file' && type !== 'block') {
        throw new InvalidInputError(
          `drives[${n}].fd.type`,
          `${JSON.stringify(type)} is not file or block`,
        );
      }
      // auto-read-only=off: QEMU opens once with the drive's own access mode (no read-only probe
      // first), so the one descriptor of the set is all it ever needs.
      const driver = type === 'block' ? 'host_device' : 'file';
      a.push('-add-fd', `fd=${fd},set=${set},opaque=drive-${n}`);
      a.push(
        '-drive',
        `file.driver=${driver},file.filename=/dev/fdset/${set},if=none,id=drive-${n},format=${format},readonly=${ro},cache=${cache},auto-read-only=off`,
      );
    } else {
      a.push(
        '-drive',
        `file=${file},if=none,id=drive-${n},format=${format},readonly=${ro},cache=${cache}`,
      );
    }
    a.push('-device', `${dev('virtio-blk')},drive=drive-${n},id=blk-${n},serial=${serial}`);
  });

  const macs = new Set<string>();
  (config.nics ?? []).forEach((nic, n) => {
    if (!TAP.test(nic.tap)) {
      throw new InvalidInputError(
        `nics[${n}].tap`,
        `${JSON.stringify(nic.tap)} is not a device name (1–15 of letters, digits, '-', '_', '.')`,
      );
    }
    if (!MAC.test(nic.mac)) {
      throw new InvalidInputError(
        `nics[${n}].mac`,
        `${JSON.stringify(nic.mac)} is not a MAC address`,
      );
    }
    const mac = nic.mac.toLowerCase();
    if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) {
      throw new InvalidInputError(`nics[${n}].mac`, `${mac} is a multicast address`);
    }
    if (macs.has(mac)) throw new InvalidInputError(`nics[${n}].mac`, `${mac} is used twice`);
    macs.add(mac);
    a.push('-netdev', `tap,id=net${n},ifname=${nic.tap},script=no,downscript=no`);
    a.push('-device', `${dev('virtio-net')},netdev=net${n},id=nic${n},mac=${mac}`);
  });

  if (config.pidFile !== undefined) a.push('-pidfile', checkPath('pidFile', config.pidFile));
  return a;
}

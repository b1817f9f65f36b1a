import { describe, expect, it } from '@jest/globals';
import { InvalidInputError } from '../../../src/agent/errors.js';
import { virtioBlkSerial } from '../../../src/node-agent/hypervisor/block-serial.js';
import {
  buildQemuArgs,
  escapeOptionValue,
  kernelCommandLine,
  microvmMachineOption,
  type VmConfig,
} from '../../../src/node-agent/hypervisor/qemu-args.js';

const base: VmConfig = {
  name: 'sb-1',
  machine: 'pc',
  accelerator: 'tcg',
  vcpus: 1,
  memoryMiB: 512,
  kernel: '/img/vmlinux',
  initrd: '/img/initrd',
  console: { logFile: '/run/vm/console.log' },
  qmpSocket: '/run/vm/qmp.sock',
};

/** The values following each occurrence of a flag. */
function values(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] as string] : []));
}

function refuses(config: VmConfig, field: string): void {
  let err: unknown;
  try {
    buildQemuArgs(config);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(InvalidInputError);
  expect((err as InvalidInputError).field).toBe(field);
}

describe('buildQemuArgs', () => {
  it('minimal TCG VM: golden argv', () => {
    expect(buildQemuArgs(base)).toEqual([
      '-name',
      'sb-1,debug-threads=on',
      '-machine',
      'pc',
      '-accel',
      'tcg,tb-size=128',
      '-smp',
      '1',
      '-m',
      '512M',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-no-reboot',
      '-msg',
      'timestamp=on',
      '-kernel',
      '/img/vmlinux',
      '-initrd',
      '/img/initrd',
      '-append',
      'console=ttyS0 panic=-1 quiet tsc=reliable no_timer_check',
      '-chardev',
      'file,id=con0,path=/run/vm/console.log',
      '-serial',
      'chardev:con0',
      '-chardev',
      'socket,id=qmp,path=/run/vm/qmp.sock,server=on,wait=off',
      '-mon',
      'chardev=qmp,mode=control',
    ]);
  });

  it('KVM gets -accel kvm and -cpu host; TCG gets no -cpu unless asked, and thread= when set', () => {
    const kvm = buildQemuArgs({ ...base, accelerator: 'kvm' });
    expect(values(kvm, '-accel')).toEqual(['kvm']);
    expect(values(kvm, '-cpu')).toEqual(['host']);
    expect(values(buildQemuArgs(base), '-cpu')).toEqual([]);
    const tcg = buildQemuArgs({ ...base, cpu: 'max', tcgThread: 'single' });
    expect(values(tcg, '-accel')).toEqual(['tcg,tb-size=128,thread=single']);
    expect(values(tcg, '-cpu')).toEqual(['max']);
  });

  it('TCG always gets a bounded translation cache (QEMU would take 1 GiB); its size is checked', () => {
    const tcg = buildQemuArgs({ ...base, tcgTranslationCacheMiB: 64 });
    expect(values(tcg, '-accel')).toEqual(['tcg,tb-size=64']);
    refuses({ ...base, tcgTranslationCacheMiB: 0 }, 'tcgTranslationCacheMiB');
    refuses({ ...base, tcgTranslationCacheMiB: 1.5 }, 'tcgTranslationCacheMiB');
  });

  it('9p share, agent channel, drives, NICs and pidfile: golden tail', () => {
    const args = buildQemuArgs({
      ...base,
      machine: 'q35',
      agentChannelSocket: '/run/vm/agent-channel.sock',
      sharedDir: '/run/kata-containers/shared/pods/sb-1',
      drives: [
        { path: '/var/lib/c1.img', serialId: 'c1' },
        { path: '/var/lib/c2.img', serialId: 'f'.repeat(64), readOnly: true, cache: 'writeback' },
      ],
      nics: [{ tap: 'tap0_kata', mac: '02:42:AC:11:00:02' }],
      pidFile: '/run/vm/qemu.pid',
    });
    expect(values(args, '-machine')).toEqual(['q35']);
    const tail = args.slice(args.indexOf('-mon') + 2);
    const longSerial = virtioBlkSerial('f'.repeat(64));
    expect(tail).toEqual([
      '-device',
      'virtio-serial-pci,id=serial0',
      '-chardev',
      'socket,id=charch0,path=/run/vm/agent-channel.sock,server=on,wait=off',
      '-device',
      'virtserialport,bus=serial0.0,chardev=charch0,id=channel0,name=agent.channel.0',
      '-fsdev',
      'local,id=fs0,path=/run/kata-containers/shared/pods/sb-1,security_model=none,multidevs=remap',
      '-device',
      'virtio-9p-pci,fsdev=fs0,mount_tag=kataShared',
      '-drive',
      'file=/var/lib/c1.img,if=none,id=drive-0,format=raw,readonly=off,cache=none',
      '-device',
      'virtio-blk-pci,drive=drive-0,id=blk-0,serial=c1',
      '-drive',
      'file=/var/lib/c2.img,if=none,id=drive-1,format=raw,readonly=on,cache=writeback',
      '-device',
      `virtio-blk-pci,drive=drive-1,id=blk-1,serial=${longSerial}`,
      '-netdev',
      'tap,id=net0,ifname=tap0_kata,script=no,downscript=no',
      '-device',
      'virtio-net-pci,netdev=net0,id=nic0,mac=02:42:ac:11:00:02',
      '-pidfile',
      '/run/vm/qemu.pid',
    ]);
  });

  it('a root drive: read-only, the first virtio device (vda), booted with root= and no -initrd', () => {
    const { initrd: _, ...noInitrd } = base;
    const args = buildQemuArgs({
      ...noInitrd,
      rootDisk: { path: '/img/rootfs.erofs', fsType: 'erofs' },
      agentChannelSocket: '/run/vm/ch.sock',
      sharedDir: '/run/vm/share',
      drives: [{ path: '/dev/vg/data', serialId: 'data' }],
    });
    expect(args).not.toContain('-initrd');
    expect(values(args, '-drive')[0]).toBe(
      'file=/img/rootfs.erofs,if=none,id=drive-root,format=raw,readonly=on,cache=writeback,auto-read-only=off',
    );
    const devices = values(args, '-device');
    expect(devices[0]).toBe('virtio-blk-pci,drive=drive-root,id=blk-root,serial=KATA_GUEST_ROOT');
    expect(devices.slice(1).some((d) => d.includes('drive-root'))).toBe(false);
    expect(values(args, '-append')[0]).toBe(
      'console=ttyS0 panic=-1 quiet tsc=reliable no_timer_check root=/dev/vda rootfstype=erofs ro init=/init',
    );
    const mv = buildQemuArgs({
      ...noInitrd,
      machine: 'microvm',
      rootDisk: { path: '/img/rootfs.erofs', fsType: 'erofs' },
    });
    expect(values(mv, '-device')[0]).toMatch(/^virtio-blk-device,drive=drive-root,/);
  });

  it('a root drive is refused beside an initrd, with another file system, or as a tenant drive', () => {
    const rootDisk = { path: '/img/rootfs.erofs', fsType: 'erofs' as const };
    refuses({ ...base, rootDisk }, 'rootDisk');
    const { initrd: _, ...noInitrd } = base;
    refuses(
      { ...noInitrd, rootDisk: { ...rootDisk, fsType: 'ext4' as 'erofs' } },
      'rootDisk.fsType',
    );
    refuses({ ...noInitrd, rootDisk: { ...rootDisk, path: 'rootfs.erofs' } }, 'rootDisk.path');
    // No drive may carry the root's serial, so the guest never takes its own root for a tenant's.
    refuses(
      { ...base, drives: [{ path: '/d', serialId: 'KATA_GUEST_ROOT' }] },
      'drives[0].serialId',
    );
  });

  it('drives as inherited descriptors: -add-fd fd sets and /dev/fdset, never the host path', () => {
    const args = buildQemuArgs({
      ...base,
      drives: [
        { path: '/srv/t/c1.img', serialId: 'c1', fd: { fd: 3, set: 0, type: 'file' } },
        {
          path: '/dev/loop3',
          serialId: 'dev-1',
          readOnly: true,
          fd: { fd: 4, set: 1, type: 'block' },
        },
      ],
    });
    expect(values(args, '-add-fd')).toEqual([
      'fd=3,set=0,opaque=drive-0',
      'fd=4,set=1,opaque=drive-1',
    ]);
    expect(values(args, '-drive')).toEqual([
      'file.driver=file,file.filename=/dev/fdset/0,if=none,id=drive-0,format=raw,readonly=off,cache=none,auto-read-only=off',
      'file.driver=host_device,file.filename=/dev/fdset/1,if=none,id=drive-1,format=raw,readonly=on,cache=none,auto-read-only=off',
    ]);
    expect(args.join(' ')).not.toContain('/srv/t/c1.img');
    expect(args.join(' ')).not.toContain('/dev/loop3');
    // Each fd set is added before the drive that names it.
    expect(args.indexOf('fd=3,set=0,opaque=drive-0')).toBeLessThan(
      args.findIndex((a) => a.includes('/dev/fdset/0')),
    );
    const d = { path: '/a.img', serialId: 'c' };
    refuses(
      { ...base, drives: [{ ...d, fd: { fd: 2, set: 0, type: 'file' } }] },
      'drives[0].fd.fd',
    );
    refuses(
      { ...base, drives: [{ ...d, fd: { fd: 3, set: -1, type: 'file' } }] },
      'drives[0].fd.set',
    );
    refuses(
      { ...base, drives: [{ ...d, fd: { fd: 3, set: 0, type: 'dir' as never } }] },
      'drives[0].fd.type',
    );
  });

  it('microvm uses virtio-mmio devices, ACPI and the legacy PIT/PIC/RTC, and QEMU picks its firmware', () => {
    const args = buildQemuArgs({
      ...base,
      machine: 'microvm',
      agentChannelSocket: '/run/vm/a.sock',
      sharedDir: '/s',
      drives: [{ path: '/d.img', serialId: 'x' }],
      nics: [{ tap: 'tap0', mac: '02:00:00:00:00:01' }],
    });
    expect(values(args, '-machine')).toEqual(['microvm,acpi=on,pit=on,pic=on,rtc=on']);
    expect(values(args, '-bios')).toEqual([]);
    const devices = values(args, '-device').map((d) => d.split(',')[0]);
    expect(devices).toEqual([
      'virtio-serial-device',
      'virtserialport',
      'virtio-9p-device',
      'virtio-blk-device',
      'virtio-net-device',
    ]);
  });

  it('microvm switches override the defaults one by one; a non-boolean is refused', () => {
    const machine = (microvm: VmConfig['microvm']): string[] =>
      values(buildQemuArgs({ ...base, machine: 'microvm', microvm }), '-machine');
    expect(machine({ acpi: false })).toEqual(['microvm,acpi=off,pit=on,pic=on,rtc=on']);
    expect(machine({ pit: false, pic: false, rtc: false })).toEqual([
      'microvm,acpi=on,pit=off,pic=off,rtc=off',
    ]);
    expect(microvmMachineOption()).toBe('microvm,acpi=on,pit=on,pic=on,rtc=on');
    refuses({ ...base, machine: 'microvm', microvm: { pit: 'off' as never } }, 'microvm.pit');
    // pc and q35 take no microvm switches.
    expect(
      values(buildQemuArgs({ ...base, machine: 'q35', microvm: { acpi: false } }), '-machine'),
    ).toEqual(['q35']);
  });

  it('a TCG microvm guest gets the host TSC rate as tsc_early_khz (not pc, KVM or replaced defaults)', () => {
    const tcg = kernelCommandLine({ ...base, machine: 'microvm', tscKhz: 2_596_144 });
    expect(tcg.split(' ')).toContain('tsc_early_khz=2596144');
    const mv = { ...base, machine: 'microvm' as const };
    expect(kernelCommandLine({ ...mv, accelerator: 'kvm', tscKhz: 2_596_144 })).not.toContain(
      'tsc_early_khz',
    );
    expect(
      kernelCommandLine({ ...mv, tscKhz: 2_596_144, replaceDefaultKernelParams: true }),
    ).not.toContain('tsc_early_khz');
    expect(kernelCommandLine({ ...base, tscKhz: 2_596_144 })).not.toContain('tsc_early_khz');
    expect(kernelCommandLine(mv)).not.toContain('tsc_early_khz');
    refuses({ ...mv, tscKhz: 12.5 }, 'tscKhz');
    refuses({ ...mv, tscKhz: 10 }, 'tscKhz');
  });

  it('a console socket logs to the console file, appending, and takes input', () => {
    const args = buildQemuArgs({
      ...base,
      console: { logFile: '/run/vm/console.log', socket: '/run/vm/console.sock' },
    });
    expect(values(args, '-chardev')[0]).toBe(
      'socket,id=con0,path=/run/vm/console.sock,server=on,wait=off,logfile=/run/vm/console.log,logappend=on',
    );
    expect(values(args, '-serial')).toEqual(['chardev:con0']);
  });

  it('virtconsole puts the console on hvc0 behind the virtio-serial bus', () => {
    const args = buildQemuArgs({ ...base, console: { logFile: '/c.log', kind: 'virtconsole' } });
    expect(values(args, '-serial')).toEqual([]);
    expect(values(args, '-device')).toEqual([
      'virtio-serial-pci,id=serial0',
      'virtconsole,chardev=con0,id=console0',
    ]);
    expect(values(args, '-append')[0]).toMatch(/^console=hvc0 /);
  });

  it('doubles commas inside option values; plain argv values stay as they are', () => {
    const args = buildQemuArgs({
      ...base,
      kernel: '/img,1/vmlinux',
      console: { logFile: '/run/a,b/console.log' },
      sharedDir: '/share,x',
      drives: [{ path: '/d,1.img', serialId: 'c' }],
    });
    expect(values(args, '-kernel')).toEqual(['/img,1/vmlinux']);
    expect(values(args, '-chardev')[0]).toBe('file,id=con0,path=/run/a,,b/console.log');
    expect(values(args, '-fsdev')[0]).toContain('path=/share,,x,');
    expect(values(args, '-drive')[0]).toContain('file=/d,,1.img,');
    expect(escapeOptionValue('a,,b')).toBe('a,,,,b');
  });

  it('kernel parameters: defaults then extras; replaceable; whitespace refused', () => {
    expect(kernelCommandLine({ ...base, kernelParams: ['kata.modules=all', 'loglevel=3'] })).toBe(
      'console=ttyS0 panic=-1 quiet tsc=reliable no_timer_check kata.modules=all loglevel=3',
    );
    expect(
      kernelCommandLine({
        ...base,
        replaceDefaultKernelParams: true,
        kernelParams: ['console=ttyS0'],
      }),
    ).toBe('console=ttyS0');
    refuses({ ...base, kernelParams: ['a b'] }, 'kernelParams[0]');
    refuses({ ...base, kernelParams: [''] }, 'kernelParams[0]');
  });

  it('refuses unsafe or malformed input, naming the field', () => {
    refuses({ ...base, name: 'a,b' }, 'name');
    refuses({ ...base, name: '1abc' }, 'name');
    refuses({ ...base, name: 'x'.repeat(64) }, 'name');
    refuses({ ...base, vcpus: 0 }, 'vcpus');
    refuses({ ...base, vcpus: 1.5 }, 'vcpus');
    refuses({ ...base, memoryMiB: 32 }, 'memoryMiB');
    refuses({ ...base, kernel: 'vmlinux' }, 'kernel');
    refuses({ ...base, initrd: '../initrd' }, 'initrd');
    refuses({ ...base, qmpSocket: 'qmp.sock' }, 'qmpSocket');
    refuses({ ...base, console: { logFile: '/a\nb' } }, 'console.logFile');
    refuses({ ...base, sharedDir: 'rel' }, 'sharedDir');
    refuses({ ...base, agentChannelSocket: '/a\0b' }, 'agentChannelSocket');
    refuses({ ...base, pidFile: 'pid' }, 'pidFile');
    refuses({ ...base, bios: 'bios.bin' }, 'bios');
    refuses({ ...base, cpu: 'host;rm' }, 'cpu');
    refuses({ ...base, machine: 'isapc' as never }, 'machine');
    refuses({ ...base, accelerator: 'hvf' as never }, 'accelerator');
    refuses({ ...base, drives: [{ path: 'rel.img', serialId: 'c' }] }, 'drives[0].path');
    refuses({ ...base, drives: [{ path: '/a.img', serialId: '' }] }, 'drives[0].serialId');
    refuses(
      { ...base, drives: [{ path: '/a.img', serialId: 'c', format: 'vmdk' as never }] },
      'drives[0].format',
    );
    refuses({ ...base, nics: [{ tap: 'tap,0', mac: '02:00:00:00:00:01' }] }, 'nics[0].tap');
    refuses({ ...base, nics: [{ tap: 'a'.repeat(16), mac: '02:00:00:00:00:01' }] }, 'nics[0].tap');
    refuses({ ...base, nics: [{ tap: 'tap0', mac: '02:00:00:00:00' }] }, 'nics[0].mac');
    refuses({ ...base, nics: [{ tap: 'tap0', mac: '01:00:5e:00:00:01' }] }, 'nics[0].mac');
    refuses(
      {
        ...base,
        nics: [
          { tap: 'tap0', mac: '02:00:00:00:00:01' },
          { tap: 'tap1', mac: '02:00:00:00:00:01' },
        ],
      },
      'nics[1].mac',
    );
    refuses(
      { ...base, machine: 'microvm', console: { logFile: '/c', kind: 'virtconsole' } },
      'console.kind',
    );
  });
});

describe('virtioBlkSerial', () => {
  it('keeps ids that fit, hashes longer ones to exactly 20 characters', () => {
    expect(virtioBlkSerial('c1')).toBe('c1');
    expect(virtioBlkSerial('x'.repeat(20))).toBe('x'.repeat(20));
    const long = virtioBlkSerial('0123456789abcdef'.repeat(4));
    expect(long).toMatch(/^0123456789a-[0-9a-f]{8}$/);
    expect(long).toHaveLength(20);
    // Same prefix, different ids: different serials; same id: same serial (the guest recomputes it).
    expect(virtioBlkSerial('x'.repeat(21))).not.toBe(virtioBlkSerial('x'.repeat(22)));
    expect(virtioBlkSerial('a'.repeat(64))).toBe(virtioBlkSerial('a'.repeat(64)));
    // Unsafe characters never reach QEMU's option string.
    expect(virtioBlkSerial('a,b')).toMatch(/^a_b-[0-9a-f]{8}$/);
    expect(() => virtioBlkSerial('')).toThrow();
  });
});

// The VM's block drives as the checked host paths allow them, and the one launch failure that
// is a drive's: its path no longer opening beneath its root when QEMU started. Pure.
import type { KataSandboxSpec } from '../../crds/index.js';
import { hostPathReasonOf, parseHostFsError } from '../host-fs/errors.js';
import { HostPathError } from '../storage/host-paths.js';
import { BootError } from '../hypervisor/boot.js';
import type { CheckedSandboxPath } from '../storage/sandbox-host-paths.js';
import { planBlockDrives, type BlockDrivePlan } from '../storage/block-drives.js';

/**
 * The VM's drives and each container's block storages/devices, from the checked paths: each a
 * descriptor the helper re-opens beneath the root it was checked beneath, with the same type.
 */
export function blockDrivePlan(
  spec: KataSandboxSpec,
  checked: ReadonlyMap<string, CheckedSandboxPath>,
): BlockDrivePlan {
  const sourceOf = (field: string) => {
    const c = checked.get(field);
    if (!c || c.type === 'dir') throw new Error(`${field} was not checked as a block source`);
    return { path: c.path, source: { root: c.root, type: c.type } };
  };
  return planBlockDrives(
    spec.containers.flatMap((c, i) => {
      const b = c.rootfs?.block;
      if (!b) return [];
      const field = `spec.containers[${i}].rootfs.block.path`;
      const { path: p, source } = sourceOf(field);
      return [
        { containerId: c.name, path: p, fsType: b.fsType, readOnly: b.readOnly, field, source },
      ];
    }),
    spec.containers.flatMap((c, i) =>
      (c.devices ?? []).map((d, j) => {
        const field = `spec.containers[${i}].devices[${j}].hostPath`;
        const { path: p, source } = sourceOf(field);
        return { containerId: c.name, hostPath: p, containerPath: d.containerPath, field, source };
      }),
    ),
  );
}

/**
 * A QEMU launch the helper refused (exit 125, its JSON error in QEMU's stderr log): a drive's
 * path no longer opened beneath its root. The HostPathError of that drive's field, if so.
 */
export function driveOpenFailure(
  err: unknown,
  plan: BlockDrivePlan | undefined,
): HostPathError | undefined {
  if (!(err instanceof BootError) || err.failure !== 'QemuExited' || !plan) return undefined;
  const f = parseHostFsError(err.qemuStderrTail.join('\n'));
  const drive = f?.path !== undefined && plan.planned.find((p) => p.drive.path === f.path);
  if (!f || !drive) return undefined;
  return new HostPathError(
    hostPathReasonOf(f.code) ?? 'HostPathNotAllowed',
    drive.field,
    `${f.message} (when QEMU was started; nothing was attached)`,
  );
}

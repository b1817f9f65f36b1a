import { LinuxResources, type Spec } from '../generated/oci.js';
import { InvalidInputError } from './errors.js';

export const SHM_MOUNT_OPTIONS = ['noexec', 'nosuid', 'nodev', 'mode=1777', 'size=65536k'];

/**
 * The seed's constraints on a spec sent to the guest: hooks ran (or not) on the host, the guest
 * has no seccomp or cgroup policy to apply, the VM is the network namespace, and host namespace
 * paths mean nothing inside the VM. /dev/shm becomes a tmpfs of the guest's own.
 * Resources are sent empty rather than left out: Kata 1.x's agent appends to
 * `Linux.Resources.Devices` unconditionally (a missing one crashes it), and 1.x's runtime
 * always sends the message.
 */
export function constrainSpec(spec: Spec | undefined): Spec {
  if (!spec) throw new InvalidInputError('OCI', 'missing OCI specification');
  const linux = spec.Linux && {
    ...spec.Linux,
    Seccomp: undefined,
    Resources: LinuxResources.fromPartial({}),
    Namespaces: spec.Linux.Namespaces.filter((ns) => ns.Type !== 'network').map((ns) => ({
      ...ns,
      Path: '',
    })),
  };
  return {
    ...spec,
    Hooks: undefined,
    Linux: linux,
    Mounts: spec.Mounts.map((m) =>
      m.destination === '/dev/shm'
        ? { ...m, type: 'tmpfs', source: 'shm', options: [...SHM_MOUNT_OPTIONS] }
        : m,
    ),
  };
}

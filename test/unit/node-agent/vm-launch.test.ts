import { describe, expect, it } from '@jest/globals';
import type { GuestImagePaths } from '../../../src/node-agent/hypervisor/guest-image.js';
import { checkVmSpec } from '../../../src/node-agent/runtime/vm-launch.js';
import type { SandboxHost } from '../../../src/node-agent/runtime/sandbox-host.js';
import { StepError } from '../../../src/node-agent/runtime/step-failure.js';

const image: GuestImagePaths = {
  dir: '/img',
  kernel: '/img/vmlinux',
  vmlinuz: '/img/vmlinuz',
  kernels: { default: '/img/vmlinux', debian: '/img/debian/vmlinux' },
  initrd: '/img/initrd',
  rootDisk: '/img/rootfs.erofs',
  manifest: '/img/manifest.json',
};

function host(img: GuestImagePaths, initrdBytes = 40 << 20): SandboxHost {
  return { guestImage: () => img, fileSize: async () => initrdBytes } as unknown as SandboxHost;
}

async function refusal(p: Promise<unknown>): Promise<StepError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StepError);
  return err as StepError;
}

describe('checkVmSpec: spec.vm.kernel picks the kernel the VM boots', () => {
  it('boots the default kernel from the read-only root drive when the field is unset or "default"', async () => {
    for (const vm of [undefined, { kernel: 'default' }]) {
      const got = await checkVmSpec(host(image), vm);
      expect(got.kernel).toBe('/img/vmlinux');
      expect(got.root).toEqual({ rootDisk: { path: '/img/rootfs.erofs', fsType: 'erofs' } });
    }
  });

  it('boots the default kernel from the initrd on an image without a root drive', async () => {
    const { rootDisk: _, ...older } = image;
    expect((await checkVmSpec(host(older), undefined)).root).toEqual({ initrd: '/img/initrd' });
  });

  it('boots the stock kernel for "debian" from the initrd, the rest of the image unchanged', async () => {
    const got = await checkVmSpec(host(image), { kernel: 'debian' });
    expect(got).toEqual({
      ...image,
      kernel: '/img/debian/vmlinux',
      root: { initrd: '/img/initrd' },
    });
  });

  it('refuses a name the node has no kernel for, naming the field and the names it has', async () => {
    const err = await refusal(checkVmSpec(host(image), { kernel: 'fedora' }));
    expect(err.failure.reason).toBe('KernelNotFound');
    expect(err.failure.message).toBe(
      'spec.vm.kernel: "fedora" is not a kernel this node has (it has "default", "debian")',
    );
    // Names of Object.prototype are no kernels either.
    const proto = await refusal(checkVmSpec(host(image), { kernel: 'constructor' }));
    expect(proto.failure.reason).toBe('KernelNotFound');
  });

  it('refuses "debian" on an image without the stock kernel', async () => {
    const only = { ...image, kernels: { default: '/img/vmlinux' } };
    const err = await refusal(checkVmSpec(host(only), { kernel: 'debian' }));
    expect(err.failure.message).toMatch(
      /"debian" is not a kernel this node has \(it has "default"\)/,
    );
  });

  it('refuses too little memory for the root the kernel boots', async () => {
    // The stock kernel unpacks the initrd into RAM: its size counts.
    const err = await refusal(
      checkVmSpec(host(image, 400 << 20), { kernel: 'debian', memoryMiB: 512 }),
    );
    expect(err.failure.reason).toBe('MemoryTooSmall');
    expect(err.failure.message).toMatch(/^spec\.vm\.memoryMiB: 512 MiB is less than the 744 MiB/);
    // The default kernel reads its root from the drive: the initrd's size does not count.
    await expect(
      checkVmSpec(host(image, 400 << 20), { kernel: 'default', memoryMiB: 160 }),
    ).resolves.toMatchObject({ kernel: '/img/vmlinux' });
    const small = await refusal(checkVmSpec(host(image), { memoryMiB: 128 }));
    expect(small.failure.message).toMatch(/less than the 160 MiB .* read-only root drive/);
  });
});

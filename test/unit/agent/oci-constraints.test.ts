import { describe, expect, it } from '@jest/globals';
import { constrainSpec } from '../../../src/agent/oci-constraints.js';
import { LinuxResources, Spec } from '../../../src/generated/oci.js';

const spec = (): Spec =>
  Spec.fromPartial({
    Version: '1.1.0',
    Hooks: { Prestart: [{ Path: '/usr/bin/hook' }] },
    Mounts: [
      { destination: '/proc', source: 'proc', type: 'proc' },
      { destination: '/dev/shm', source: '/host/shm', type: 'bind', options: ['rbind'] },
    ],
    Linux: {
      Seccomp: { DefaultAction: 'SCMP_ACT_ERRNO' },
      Resources: { Memory: { Limit: 1 << 20 } },
      Namespaces: [
        { Type: 'pid', Path: '/proc/1/ns/pid' },
        { Type: 'network', Path: '/var/run/netns/x' },
        { Type: 'mount' },
        { Type: 'ipc', Path: '/proc/9/ns/ipc' },
      ],
    },
  });

describe('constrainSpec', () => {
  it('removes hooks and seccomp, and empties resources (present: Kata 1.x needs the message)', () => {
    const out = constrainSpec(spec());
    expect(out.Hooks).toBeUndefined();
    expect(out.Linux?.Seccomp).toBeUndefined();
    expect(out.Linux?.Resources).toEqual(LinuxResources.fromPartial({}));
    expect(out.Linux?.Resources?.Memory).toBeUndefined();
  });

  it('drops the network namespace and empties the others’ paths', () => {
    expect(constrainSpec(spec()).Linux?.Namespaces).toEqual([
      { Type: 'pid', Path: '' },
      { Type: 'mount', Path: '' },
      { Type: 'ipc', Path: '' },
    ]);
  });

  it('makes /dev/shm a tmpfs of the guest and leaves other mounts alone', () => {
    const out = constrainSpec(spec());
    expect(out.Mounts).toEqual([
      { destination: '/proc', source: 'proc', type: 'proc', options: [] },
      {
        destination: '/dev/shm',
        source: 'shm',
        type: 'tmpfs',
        options: ['noexec', 'nosuid', 'nodev', 'mode=1777', 'size=65536k'],
      },
    ]);
  });

  it('does not change its input', () => {
    const input = spec();
    const copy = structuredClone(input);
    constrainSpec(input);
    expect(input).toEqual(copy);
  });

  it('refuses a missing spec', () => {
    expect(() => constrainSpec(undefined)).toThrow('OCI: missing OCI specification');
  });
});

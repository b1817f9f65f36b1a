import { beforeAll, describe, expect, it } from '@jest/globals';
import type { ValidateFunction } from 'ajv';
import { Spec } from '../../../src/generated/oci.js';
import {
  DEFAULT_CAPABILITIES,
  ociProcess,
  toOciConfig,
} from '../../../src/agent/guest/oci-config.js';
import { constrainSpec } from '../../../src/agent/oci-constraints.js';
import { configValidator } from './oci-schema.js';

let validate: ValidateFunction;
beforeAll(() => {
  validate = configValidator();
});

function expectValid(config: unknown): void {
  const ok = validate(config);
  if (!ok) throw new Error(JSON.stringify(validate.errors, null, 2));
  expect(ok).toBe(true);
}

const ROOT = '/run/kata-containers/shared/containers/c1/rootfs';

const specs: Record<string, Spec> = {
  minimal: Spec.fromPartial({ Root: { Path: ROOT }, Process: { Args: ['true'] } }),
  'no process': Spec.fromPartial({ Root: { Path: ROOT } }),
  kubernetes: Spec.fromPartial({
    Version: '1.0.2',
    Hostname: 'pod-a',
    Process: {
      Args: ['sh', '-c', 'echo hello'],
      Env: ['PATH=/bin', 'A=b'],
      Cwd: '/work',
      User: { UID: 1000, GID: 1000, AdditionalGids: [10, 20] },
      Capabilities: { Bounding: ['CAP_KILL'], Effective: ['CAP_KILL'], Permitted: ['CAP_KILL'] },
      Rlimits: [{ Type: 'RLIMIT_NOFILE', Hard: 1024, Soft: 1024 }],
      NoNewPrivileges: true,
      OOMScoreAdj: 100,
    },
    Mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: [] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['ro', 'nosuid'] },
      { destination: '/dev/shm', type: 'bind', source: '/host/shm', options: ['rbind'] },
      {
        destination: '/data',
        type: 'bind',
        source: '/run/kata-containers/shared/containers/c1-vol',
        options: ['rbind', 'ro'],
      },
    ],
    Annotations: { 'io.kubernetes.pod.name': 'a' },
    Linux: {
      Namespaces: [
        { Type: 'pid', Path: '' },
        { Type: 'network', Path: '/proc/1/ns/net' },
        { Type: 'ipc', Path: '' },
      ],
      MaskedPaths: ['/proc/kcore', '/proc/keys'],
      ReadonlyPaths: ['/proc/sys', '/proc/bus'],
      Sysctl: { 'net.ipv4.ip_forward': '1' },
      CgroupsPath: '/kubepods/pod-a/c1',
      Resources: {
        Devices: [{ Allow: false, Access: 'rwm', Type: 'a', Major: -1, Minor: -1 }],
        Memory: { Limit: 128 << 20 },
        Pids: { Limit: 100 },
        CPU: { Shares: 512, Quota: 50000, Period: 100000 },
      },
    },
    Hooks: { Prestart: [{ Path: '/bin/hook', Args: [], Env: [] }] },
  }),
  'devices and id maps': Spec.fromPartial({
    Root: { Path: ROOT, Readonly: true },
    Process: { Args: ['cat', '/dev/xvda'], Terminal: false },
    Linux: {
      Devices: [
        { Path: '/dev/xvda', Type: 'b', Major: 254, Minor: 16, FileMode: 0o660, UID: 0, GID: 6 },
        { Path: '/dev/fifo', Type: 'p' },
      ],
      UIDMappings: [{ HostID: 100000, ContainerID: 0, Size: 65536 }],
      GIDMappings: [{ HostID: 100000, ContainerID: 0, Size: 65536 }],
      RootfsPropagation: 'rprivate',
      Namespaces: [{ Type: 'user', Path: '' }],
    },
  }),
  'terminal with console size': Spec.fromPartial({
    Root: { Path: ROOT },
    Process: { Args: ['sh'], Terminal: true, ConsoleSize: { Height: 24, Width: 80 } },
  }),
  'empty capabilities message': Spec.fromPartial({
    Root: { Path: ROOT },
    Process: {
      Args: ['id'],
      Capabilities: { Bounding: [], Effective: [], Inheritable: [], Permitted: [], Ambient: [] },
    },
  }),
};

describe('toOciConfig', () => {
  it.each(Object.entries(specs))(
    '%s: validates against the OCI runtime-spec schema',
    (_n, spec) => {
      expectValid(toOciConfig(spec));
      expectValid(toOciConfig(constrainSpec(spec)));
    },
  );

  it('a wire round trip (encode, decode) still validates', () => {
    for (const spec of Object.values(specs)) {
      expectValid(toOciConfig(Spec.decode(Spec.encode(spec).finish())));
    }
  });

  it('the minimal spec gets defaults: ociVersion, cwd, PATH, caps, namespaces', () => {
    const c = toOciConfig(specs.minimal!);
    expect(c).toEqual({
      ociVersion: '1.1.0',
      process: {
        user: { uid: 0, gid: 0 },
        args: ['true'],
        env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        cwd: '/',
        capabilities: {
          bounding: DEFAULT_CAPABILITIES,
          effective: DEFAULT_CAPABILITIES,
          permitted: DEFAULT_CAPABILITIES,
        },
      },
      root: { path: ROOT },
      linux: {
        namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }],
      },
    });
  });

  it('keeps what is set, in lowercase OCI keys, and drops hooks', () => {
    const c = toOciConfig(specs.kubernetes!);
    expect(c.ociVersion).toBe('1.0.2');
    expect(c.hostname).toBe('pod-a');
    expect(c.process?.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 20] });
    expect(c.process?.env).toEqual(['PATH=/bin', 'A=b']);
    expect(c.process?.capabilities).toEqual({
      bounding: ['CAP_KILL'],
      effective: ['CAP_KILL'],
      permitted: ['CAP_KILL'],
    });
    expect(c.process?.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
    expect(c.process?.noNewPrivileges).toBe(true);
    expect(c.mounts?.[0]).toEqual({ destination: '/proc', type: 'proc', source: 'proc' });
    expect(c.linux.namespaces.map((n) => n.type)).toEqual([
      'pid',
      'network',
      'ipc',
      'mount',
      'uts',
    ]);
    expect(c.linux.namespaces[1]).toEqual({ type: 'network', path: '/proc/1/ns/net' });
    expect(c.linux.resources).toEqual({
      devices: [{ allow: false, type: 'a', access: 'rwm' }],
      memory: { limit: 128 << 20 },
      cpu: { shares: 512, quota: 50000, period: 100000 },
      pids: { limit: 100 },
    });
    expect(c).not.toHaveProperty('hooks');
  });

  it("recursive propagation names become the schema's plain ones", () => {
    const c = toOciConfig(specs['devices and id maps']!);
    expect(c.linux.rootfsPropagation).toBe('private');
  });

  it('uses the root path it is given', () => {
    expect(toOciConfig(specs.minimal!, '/run/kata-containers/x/rootfs').root.path).toBe(
      '/run/kata-containers/x/rootfs',
    );
  });

  it('devices keep major/minor except for fifos; read-only root is kept', () => {
    const c = toOciConfig(specs['devices and id maps']!);
    expect(c.root).toEqual({ path: ROOT, readonly: true });
    expect(c.linux.devices).toEqual([
      { path: '/dev/xvda', type: 'b', major: 254, minor: 16, fileMode: 0o660, uid: 0, gid: 6 },
      { path: '/dev/fifo', type: 'p', uid: 0, gid: 0 },
    ]);
  });

  it('an exec process file is the process object alone', () => {
    const p = ociProcess(specs.kubernetes!.Process!);
    expectValid({ ociVersion: '1.1.0', root: { path: ROOT }, process: p });
  });
});

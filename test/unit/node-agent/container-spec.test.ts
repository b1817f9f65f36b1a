import { describe, expect, it } from '@jest/globals';
import { constrainSpec } from '../../../src/agent/oci-constraints.js';
import { buildContainerSpec } from '../../../src/node-agent/oci/container-spec.js';
import { toOciConfig } from '../../../src/agent/guest/oci-config.js';
import { configValidator } from '../guest-agent/oci-schema.js';

const volumes = new Map([
  ['data', '/run/kata-containers/shared/containers/_volumes/data'],
  ['logs', '/run/kata-containers/shared/containers/_volumes/logs'],
]);

describe('buildContainerSpec', () => {
  const built = buildContainerSpec({
    field: 'spec.containers[0]',
    hostname: 'web',
    volumeGuestPaths: volumes,
    container: {
      name: 'main',
      command: ['/bin/sh'],
      args: ['-c', 'echo hi'],
      env: [{ name: 'GREETING', value: 'hi' }],
      workingDir: '/tmp',
      user: '1000:1000',
      primaryGroup: 2000,
      supplementalGroups: [10, 20],
      volumeMounts: [
        { name: 'data', mountPath: '/data', readOnly: true },
        { name: 'logs', mountPath: '/logs' },
      ],
      devices: [{ hostPath: '/dev/loop3', containerPath: '/dev/xvdb' }],
    },
  });

  it('runs the command with args, env, cwd, user and groups', () => {
    expect(built.spec.Process).toMatchObject({
      Args: ['/bin/sh', '-c', 'echo hi'],
      Cwd: '/tmp',
      Terminal: false,
      User: { UID: 1000, GID: 2000, AdditionalGids: [10, 20] },
    });
    expect(built.spec.Process?.Env).toEqual([expect.stringMatching(/^PATH=/), 'GREETING=hi']);
    expect(built.stringUser).toEqual({ uid: '1000', gid: '2000', additionalGids: ['10', '20'] });
  });

  it('gives a container with tty: true a terminal (process.terminal in its config.json)', () => {
    const tty = buildContainerSpec({
      field: 'spec.containers[0]',
      hostname: 'web',
      volumeGuestPaths: volumes,
      container: { name: 'main', command: ['/bin/sh'], tty: true },
    });
    expect(tty.spec.Process?.Terminal).toBe(true);
    const config = toOciConfig(constrainSpec(tty.spec), tty.spec.Root!.Path);
    expect(config.process?.terminal).toBe(true);
  });

  it('roots the container in its shared directory, with the sandbox hostname', () => {
    expect(built.spec.Root).toEqual({
      Path: '/run/kata-containers/shared/containers/main/rootfs',
      Readonly: false,
    });
    expect(built.spec.Hostname).toBe('web');
  });

  it('mounts the standard filesystems, /sys read-only, and volumes at their guest paths', () => {
    const byDest = new Map(built.spec.Mounts.map((m) => [m.destination, m]));
    expect([...byDest.keys()]).toEqual([
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/dev/mqueue',
      '/sys',
      '/sys/fs/cgroup',
      '/data',
      '/logs',
    ]);
    expect(byDest.get('/sys')?.options).toContain('ro');
    expect(byDest.get('/data')).toEqual({
      destination: '/data',
      type: 'bind',
      source: '/run/kata-containers/shared/containers/_volumes/data',
      options: ['rbind', 'ro'],
    });
    expect(byDest.get('/logs')?.options).toEqual(['rbind', 'rw']);
  });

  it("binds the guest's resolv.conf read-only at /etc/resolv.conf unless a volume is mounted there", () => {
    const withDns = (volumeMounts: { name: string; mountPath: string }[]) =>
      buildContainerSpec({
        field: 'spec.containers[0]',
        hostname: 'web',
        volumeGuestPaths: volumes,
        resolvConf: '/run/kata-containers/sandbox/resolv.conf',
        container: { name: 'main', command: ['/bin/true'], volumeMounts },
      }).spec.Mounts.filter((m) => m.destination === '/etc/resolv.conf');
    expect(withDns([])).toEqual([
      expect.objectContaining({
        type: 'bind',
        source: '/run/kata-containers/sandbox/resolv.conf',
        options: ['rbind', 'ro'],
      }),
    ]);
    expect(withDns([{ name: 'data', mountPath: '/etc/resolv.conf' }])).toEqual([
      expect.objectContaining({ source: volumes.get('data') }),
    ]);
    expect(built.spec.Mounts.some((m) => m.destination === '/etc/resolv.conf')).toBe(false);
  });

  it('lists devices by container path and creates pid, ipc, uts and mount namespaces', () => {
    expect(built.spec.Linux?.Devices).toEqual([
      expect.objectContaining({ Path: '/dev/xvdb', Type: 'b' }),
    ]);
    expect(built.spec.Linux?.Namespaces.map((n) => n.Type)).toEqual(['pid', 'ipc', 'uts', 'mount']);
  });

  it('survives the seed constraints with /dev/shm as the guest tmpfs', () => {
    const constrained = constrainSpec(built.spec);
    expect(constrained.Mounts.find((m) => m.destination === '/dev/shm')).toMatchObject({
      type: 'tmpfs',
      source: 'shm',
    });
    expect(constrained.Linux?.Namespaces.every((n) => n.Path === '')).toBe(true);
  });

  it('takes entrypoint, cmd, env, workdir and user from the image when the container does not', () => {
    const fromImage = buildContainerSpec({
      field: 'spec.containers[0]',
      hostname: 'h',
      volumeGuestPaths: new Map(),
      image: {
        Entrypoint: ['/bin/app'],
        Cmd: ['serve'],
        Env: ['MODE=prod'],
        WorkingDir: '/srv',
        User: '33',
      },
      container: { name: 'app', env: [{ name: 'MODE', value: 'dev' }] },
    });
    expect(fromImage.spec.Process).toMatchObject({
      Args: ['/bin/app', 'serve'],
      Cwd: '/srv',
      User: { UID: 33, GID: 0 },
    });
    expect(fromImage.spec.Process?.Env).toContain('MODE=dev');
    expect(fromImage.spec.Process?.Env).not.toContain('MODE=prod');
  });

  it('refuses a mount of an unknown volume', () => {
    expect(() =>
      buildContainerSpec({
        field: 'spec.containers[2]',
        hostname: 'h',
        volumeGuestPaths: new Map(),
        container: {
          name: 'x',
          command: ['/bin/true'],
          volumeMounts: [{ name: 'nope', mountPath: '/n' }],
        },
      }),
    ).toThrow(/spec\.containers\[2\]\.volumeMounts: volume "nope"/);
  });
});

describe('built specs against the OCI runtime-spec v1.1.0 schema', () => {
  const validate = configValidator();
  const cases: [string, Parameters<typeof buildContainerSpec>[0]][] = [
    [
      'command, env, user, groups, volumes, devices',
      {
        field: 'spec.containers[0]',
        hostname: 'web',
        volumeGuestPaths: volumes,
        container: {
          name: 'main',
          command: ['/bin/sh', '-c', 'echo hi'],
          env: [{ name: 'A', value: '1' }],
          user: '1000:1000',
          supplementalGroups: [10],
          volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: true }],
          devices: [{ hostPath: '/dev/loop3', containerPath: '/dev/xvdb' }],
        },
      },
    ],
    [
      'from an image config',
      {
        field: 'spec.containers[1]',
        hostname: 'h',
        volumeGuestPaths: new Map(),
        image: {
          Entrypoint: ['/bin/app'],
          Cmd: ['serve'],
          Env: ['MODE=prod'],
          WorkingDir: '/srv',
          User: '33:33',
        },
        container: { name: 'app' },
      },
    ],
  ];
  it.each(cases)('%s: valid before and after the seed constraints', (_n, inputs) => {
    const { spec } = buildContainerSpec(inputs);
    for (const s of [spec, constrainSpec(spec)]) {
      const config = toOciConfig(s);
      const ok = validate(config);
      expect(validate.errors ?? []).toEqual([]);
      expect(ok).toBe(true);
    }
  });
});

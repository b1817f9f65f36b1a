import { describe, expect, it } from '@jest/globals';
import { DEFAULTS, NODE_AGENT_HELP, nodeAgentConfig } from '../../../src/node-agent/config.js';
import { parseResolvConf } from '../../../src/node-agent/network/guest-dns.js';
import {
  containerFailedMessage,
  restartBackoffMs,
  shouldRestart,
} from '../../../src/node-agent/runtime/container-run.js';
import { mountsUnder, parseMountInfo } from '../../../src/node-agent/storage/mountinfo.js';
import { planBindMounts, teardownPlan } from '../../../src/node-agent/storage/shared-dir.js';

describe('node agent config', () => {
  it('defaults, with the node name required', () => {
    expect(() => nodeAgentConfig([], {})).toThrow(/--node-name/);
    const c = nodeAgentConfig(['--node-name', 'n1'], {});
    expect(c).toMatchObject({ ...DEFAULTS, nodeName: 'n1', help: false });
  });

  it('flag > env > file', () => {
    const file = {
      stateDir: '/file/state',
      logDir: '/file/log',
      allowedHostPathRoots: ['/a', '/b'],
    };
    const c = nodeAgentConfig(
      ['--config', 'cfg.json', '--state-dir', '/flag/state'],
      { NODE_NAME: 'env-node', STATE_DIR: '/env/state', LOG_DIR: '/env/log', MAX_SANDBOXES: '3' },
      () => file,
    );
    expect(c.nodeName).toBe('env-node');
    expect(c.stateDir).toBe('/flag/state');
    expect(c.logDir).toBe('/env/log');
    expect(c.allowedHostPathRoots).toEqual(['/a', '/b']);
    expect(c.maxSandboxes).toBe(3);
  });

  it('the kata-host-fs helper: /usr/local/bin by default, else flag > env > file', () => {
    expect(nodeAgentConfig(['--node-name', 'n'], {}).hostFsBinary).toBe(
      '/usr/local/bin/kata-host-fs',
    );
    const file = () => ({ hostFsBinary: '/file/kata-host-fs' });
    expect(nodeAgentConfig(['--node-name', 'n', '--config', 'c'], {}, file).hostFsBinary).toBe(
      '/file/kata-host-fs',
    );
    const env = { HOST_FS_BINARY: '/env/kata-host-fs' };
    expect(nodeAgentConfig(['--node-name', 'n', '--config', 'c'], env, file).hostFsBinary).toBe(
      '/env/kata-host-fs',
    );
    expect(
      nodeAgentConfig(['--node-name', 'n', '--host-fs-binary', '/flag/kata-host-fs'], env)
        .hostFsBinary,
    ).toBe('/flag/kata-host-fs');
  });

  it('image settings: insecure registries are host[:port], empty by default', () => {
    const c = nodeAgentConfig(
      [
        '--node-name',
        'n',
        '--insecure-registries',
        '127.0.0.1:5000, registry.local,[::1]:5001',
        '--image-pull-backoff-ms',
        '2000',
      ],
      { IMAGE_CACHE_DIR: '/data/images', IMAGE_CACHE_MAX_BYTES: '1073741824' },
    );
    expect(c).toMatchObject({
      insecureRegistries: ['127.0.0.1:5000', 'registry.local', '[::1]:5001'],
      imagePullBackoffMs: 2000,
      imageCacheDir: '/data/images',
      imageCacheMaxBytes: 1073741824,
    });
    expect(nodeAgentConfig(['--node-name', 'n'], {}).insecureRegistries).toEqual([]);
    expect(() =>
      nodeAgentConfig(['--node-name', 'n', '--insecure-registries', 'http://reg:5000'], {}),
    ).toThrow(/--insecure-registries: .* is not a list of host\[:port\]/);
  });

  it('allowed registries: host[:port] with glob labels, empty (any registry) by default', () => {
    expect(nodeAgentConfig(['--node-name', 'n'], {}).allowedRegistries).toEqual([]);
    expect(
      nodeAgentConfig(
        ['--node-name', 'n', '--allowed-registries', '*.corp.example, 127.0.0.1:5000'],
        {},
      ).allowedRegistries,
    ).toEqual(['*.corp.example', '127.0.0.1:5000']);
    expect(
      nodeAgentConfig(['--node-name', 'n'], { ALLOWED_REGISTRIES: 'docker.io' }).allowedRegistries,
    ).toEqual(['docker.io']);
    expect(() =>
      nodeAgentConfig(['--node-name', 'n', '--allowed-registries', 'https://reg/x'], {}),
    ).toThrow(/--allowed-registries: .* is not a list of host\[:port\]/);
  });

  it('network and device settings: device roots may be empty, netns roots may not', () => {
    const c = nodeAgentConfig(
      [
        '--node-name',
        'n',
        '--allowed-device-roots',
        '/dev',
        '--cni-conf-dir',
        '/x/net.d',
        '--cni-bin-dirs',
        '/x/bin,/y/bin',
        '--cni-node-netns',
        '/run/netns/node',
      ],
      { CNI_NETWORK: 'katanet' },
    );
    expect(c).toMatchObject({
      allowedDeviceRoots: ['/dev'],
      netnsRoots: ['/run/netns', '/var/run/netns'],
      cniConfDir: '/x/net.d',
      cniBinDirs: ['/x/bin', '/y/bin'],
      cniNetwork: 'katanet',
      cniNodeNetns: '/run/netns/node',
    });
    expect(nodeAgentConfig(['--node-name', 'n'], {}).allowedDeviceRoots).toEqual([]);
    expect(nodeAgentConfig(['--node-name', 'n'], {}).qemuLaunch).toBe('detached');
    expect(nodeAgentConfig(['--node-name', 'n'], { QEMU_LAUNCH: 'systemd-scope' }).qemuLaunch).toBe(
      'systemd-scope',
    );
    expect(() => nodeAgentConfig(['--node-name', 'n', '--qemu-launch', 'fork'], {})).toThrow(
      /--qemu-launch.*detached or systemd-scope/,
    );
    expect(
      nodeAgentConfig(['--node-name', 'n', '--allowed-device-roots', ''], {}).allowedDeviceRoots,
    ).toEqual([]);
    expect(() => nodeAgentConfig(['--node-name', 'n', '--netns-roots', ''], {})).toThrow(
      /--netns-roots/,
    );
  });

  it('machine type: auto unless --machine-type / MACHINE_TYPE says pc, q35 or microvm', () => {
    expect(nodeAgentConfig(['--node-name', 'n'], {}).machineType).toBe('auto');
    expect(nodeAgentConfig(['--node-name', 'n'], { MACHINE_TYPE: 'pc' }).machineType).toBe('pc');
    expect(nodeAgentConfig(['--node-name', 'n', '--machine-type', 'microvm'], {}).machineType).toBe(
      'microvm',
    );
    expect(nodeAgentConfig(['--node-name', 'n'], { MACHINE_TYPE: 'q35' }).machineType).toBe('q35');
    expect(() => nodeAgentConfig(['--node-name', 'n', '--machine-type', 'isapc'], {})).toThrow(
      /--machine-type: "isapc" is not auto, pc, q35 or microvm/,
    );
  });

  it('places VMs in cgroups under kata-sandboxes unless told otherwise', () => {
    const d = nodeAgentConfig(['--node-name', 'n'], {});
    expect(d).toMatchObject({
      cgroupRoot: '/sys/fs/cgroup',
      vmCgroupParent: 'kata-sandboxes',
      vmMemoryOverheadMiB: 256,
      tcgTranslationCacheMiB: 128,
    });
    expect(
      nodeAgentConfig(['--node-name', 'n', '--tcg-translation-cache-mib', '64'], {})
        .tcgTranslationCacheMiB,
    ).toBe(64);
    for (const bad of ['8', '5000']) {
      expect(() =>
        nodeAgentConfig(['--node-name', 'n'], { TCG_TRANSLATION_CACHE_MIB: bad }),
      ).toThrow(new RegExp(`--tcg-translation-cache-mib: ${bad} is not between 16 and 4096`));
    }
    const c = nodeAgentConfig(
      [
        '--node-name',
        'n',
        '--vm-cgroup-parent',
        'kata/vms',
        '--cgroup-root',
        '/host/sys/fs/cgroup',
      ],
      { VM_MEMORY_OVERHEAD_MIB: '300' },
    );
    expect(c).toMatchObject({
      cgroupRoot: '/host/sys/fs/cgroup',
      vmCgroupParent: 'kata/vms',
      vmMemoryOverheadMiB: 300,
    });
    expect(nodeAgentConfig(['--node-name', 'n'], { VM_CGROUP_PARENT: 'none' }).vmCgroupParent).toBe(
      'none',
    );
    for (const bad of ['../escape', '/abs', 'a b']) {
      expect(() => nodeAgentConfig(['--node-name', 'n', '--vm-cgroup-parent', bad], {})).toThrow(
        /--vm-cgroup-parent.*relative cgroup path/,
      );
    }
  });

  it('refuses bad values, naming the setting', () => {
    expect(() => nodeAgentConfig(['--node-name', 'n', '--metrics-port', 'x'], {})).toThrow(
      /--metrics-port/,
    );
    expect(() => nodeAgentConfig(['--node-name', 'n'], { DEFAULT_ACCELERATOR: 'xen' })).toThrow(
      /DEFAULT_ACCELERATOR/,
    );
    expect(() =>
      nodeAgentConfig(['--node-name', 'n', '--allowed-host-path-roots', 'rel'], {}),
    ).toThrow(/absolute/);
    expect(() => nodeAgentConfig(['--bogus'], {})).toThrow();
  });

  it('--help documents every flag', () => {
    expect(nodeAgentConfig(['--help'], {}).help).toBe(true);
    for (const flag of [
      '--node-name',
      '--state-dir',
      '--run-dir',
      '--log-dir',
      '--allowed-host-path-roots',
      '--allowed-device-roots',
      '--netns-roots',
      '--cni-conf-dir',
      '--cni-bin-dirs',
      '--cni-network',
      '--cni-node-netns',
      '--qemu-launch',
      '--guest-image-dir',
      '--qemu-binary',
      '--host-fs-binary',
      '--default-accelerator',
      '--max-sandboxes',
      '--memory-mib',
      '--metrics-port',
      '--concurrency',
      '--config',
    ]) {
      expect(NODE_AGENT_HELP).toContain(flag);
    }
  });
});

describe('pure helpers', () => {
  it('parses resolv.conf', () => {
    expect(
      parseResolvConf(
        '# c\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch a.b c\nnameserver 9.9.9.9\nnameserver 4.4.4.4\n',
      ),
    ).toEqual({
      nameservers: ['1.1.1.1', '8.8.8.8', '9.9.9.9'],
      searches: ['a.b', 'c'],
    });
  });

  it('restart policy and backoff', () => {
    expect(shouldRestart('Never', 1)).toBe(false);
    expect(shouldRestart('OnFailure', 0)).toBe(false);
    expect(shouldRestart('OnFailure', 2)).toBe(true);
    expect(shouldRestart('Always', 0)).toBe(true);
    expect(restartBackoffMs(0)).toBe(1000);
    expect(restartBackoffMs(3)).toBe(8000);
    expect(restartBackoffMs(100)).toBe(300_000);
    expect(containerFailedMessage('m', 2, ['a', 'b'])).toBe(
      'container m exited with code 2; last output:\na\nb',
    );
  });

  it('plans bind mounts under the share and parses mountinfo', () => {
    expect(
      planBindMounts({
        rootfs: [
          { container: 'main', sourceRoot: '/var/views', source: '/var/views/u/main/merged' },
        ],
        volumes: [{ name: 'data', sourceRoot: '/srv', source: '/srv/d', readOnly: true }],
      }),
    ).toEqual([
      // Targets relative to the share (walked beneath it by the helper, never following a symlink).
      {
        sourceRoot: '/var/views',
        source: '/var/views/u/main/merged',
        target: 'main/rootfs',
        readOnly: false,
      },
      { sourceRoot: '/srv', source: '/srv/d', target: '_volumes/data', readOnly: true },
    ]);
    // Teardown: recorded targets in reverse, then leftovers found under the share, each once,
    // relative to the share; anything outside the share (or the share itself) is never a target.
    expect(
      teardownPlan(
        '/run/s/u',
        ['/run/s/u/main/rootfs', '/run/s/u/_volumes/data', '/etc'],
        ['/run/s/u/renamed/rootfs', '/run/s/u/_volumes/data', '/run/s/u', '/run/s/u2/x'],
      ),
    ).toEqual(['_volumes/data', 'main/rootfs', 'renamed/rootfs']);
    const info = parseMountInfo(
      '22 1 0:21 / /run/s/u/main/rootfs rw,relatime shared:5 - ext4 /dev/sda rw\n' +
        '23 1 0:22 / /run/s/u2/with\\040space ro,relatime - ext4 /dev/sda rw\n',
    );
    expect(info[1]).toEqual({
      mountPoint: '/run/s/u2/with space',
      options: ['ro', 'relatime'],
      fsType: 'ext4',
      source: '/dev/sda',
      superOptions: ['rw'],
    });
    expect(mountsUnder(info, '/run/s/u').map((m) => m.mountPoint)).toEqual([
      '/run/s/u/main/rootfs',
    ]);
  });
});

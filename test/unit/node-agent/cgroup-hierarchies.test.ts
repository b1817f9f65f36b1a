import { describe, expect, it } from '@jest/globals';
import {
  cgroupHierarchies,
  checkCgroupParent,
  memoryLimitFile,
  parentDirs,
  parseOomKills,
  vmCgroupDir,
} from '../../../src/node-agent/cgroups/cgroup-hierarchies.js';
import { parseMountInfo } from '../../../src/node-agent/storage/mountinfo.js';

// This machine's table: cgroup v1 hybrid (a tmpfs with one mount per controller, a named
// systemd hierarchy, the v2 unified one without controllers), plus unrelated mounts.
const HYBRID = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '33 31 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  // the same memory hierarchy mounted a second time elsewhere under the root
  '42 31 0:32 / /sys/fs/cgroup/memory-again rw,relatime - cgroup cgroup rw,memory',
  // a cgroup mount outside the root (e.g. a container's) is not ours
  '50 22 0:40 / /var/lib/other/cgroup rw - cgroup cgroup rw,pids',
].join('\n');

describe('cgroupHierarchies', () => {
  it('finds every hierarchy under the root once, with its controllers', () => {
    expect(cgroupHierarchies(parseMountInfo(HYBRID), '/sys/fs/cgroup')).toEqual([
      { mountPoint: '/sys/fs/cgroup/cpu', version: 1, controllers: ['cpu'] },
      { mountPoint: '/sys/fs/cgroup/cpuset', version: 1, controllers: ['cpuset'] },
      { mountPoint: '/sys/fs/cgroup/memory', version: 1, controllers: ['memory'] },
      {
        mountPoint: '/sys/fs/cgroup/net_cls,net_prio',
        version: 1,
        controllers: ['net_cls', 'net_prio'],
      },
      { mountPoint: '/sys/fs/cgroup/systemd', version: 1, controllers: ['name=systemd'] },
      { mountPoint: '/sys/fs/cgroup/unified', version: 2, controllers: [] },
    ]);
  });

  it('finds a pure v2 host (the root itself is the mount) and a host root mounted into a Pod', () => {
    const v2 = '30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate';
    expect(cgroupHierarchies(parseMountInfo(v2), '/sys/fs/cgroup')).toEqual([
      { mountPoint: '/sys/fs/cgroup', version: 2, controllers: [] },
    ]);
    const pod = '70 60 0:26 / /host/sys/fs/cgroup rw - cgroup2 cgroup2 rw';
    expect(cgroupHierarchies(parseMountInfo(pod), '/host/sys/fs/cgroup')).toHaveLength(1);
    expect(cgroupHierarchies(parseMountInfo(pod), '/sys/fs/cgroup')).toEqual([]);
  });
});

describe('VM cgroup paths', () => {
  const memory = {
    mountPoint: '/sys/fs/cgroup/memory',
    version: 1,
    controllers: ['memory'],
  } as const;

  it('puts a VM at <hierarchy>/<parent>/<uid>, its parents created top down', () => {
    expect(vmCgroupDir(memory, 'kata-sandboxes', 'c0ffee-1')).toBe(
      '/sys/fs/cgroup/memory/kata-sandboxes/c0ffee-1',
    );
    expect(parentDirs(memory, 'kata/sandboxes')).toEqual([
      '/sys/fs/cgroup/memory/kata',
      '/sys/fs/cgroup/memory/kata/sandboxes',
    ]);
  });

  it('refuses a parent or uid that could leave the hierarchy or name something else', () => {
    for (const bad of ['', '/abs', '..', 'a/../b', 'a//b', 'a/', 'with space', 'a\nb']) {
      expect(() => checkCgroupParent(bad)).toThrow(/VM cgroup parent/);
    }
    expect(checkCgroupParent('kata.sandboxes/node:a')).toBe('kata.sandboxes/node:a');
    for (const bad of ['..', '.', 'a/b', '']) {
      expect(() => vmCgroupDir(memory, 'kata-sandboxes', bad)).toThrow(/cannot name a cgroup/);
    }
  });

  it('limits memory through the file of the hierarchy that has the controller', () => {
    expect(memoryLimitFile(memory, [])).toBe('memory.limit_in_bytes');
    expect(memoryLimitFile({ mountPoint: '/c/cpu', version: 1, controllers: ['cpu'] }, [])).toBe(
      undefined,
    );
    const v2 = { mountPoint: '/sys/fs/cgroup', version: 2, controllers: [] } as const;
    expect(memoryLimitFile(v2, ['cpu', 'memory', 'pids'])).toBe('memory.max');
    // hybrid: the unified hierarchy has no controllers
    expect(memoryLimitFile(v2, [])).toBe(undefined);
  });

  it('reads the OOM kill count of v1 memory.oom_control and v2 memory.events', () => {
    expect(parseOomKills('oom_kill_disable 0\nunder_oom 0\noom_kill 2\n')).toBe(2);
    expect(parseOomKills('low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n')).toBe(1);
    expect(parseOomKills('oom_kill_disable 0\nunder_oom 0\n')).toBe(undefined);
  });
});

// guest/kernel/check-config.sh: the kernel build fails, naming the option, when a line of the
// fragment did not survive into the final .config (a dependency the fragment lacks, an option
// renamed in a new release). Run on small files; the real fragment against a config that has it.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SCRIPT = path.join(REPO, 'guest/kernel/check-config.sh');

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'check-config-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function check(fragment: string, config: string): { status: number | null; stderr: string } {
  const f = path.join(dir, 'fragment.config');
  const c = path.join(dir, '.config');
  writeFileSync(f, fragment);
  writeFileSync(c, config);
  const r = spawnSync('bash', [SCRIPT, f, c], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stderr: r.stderr };
}

describe('guest/kernel/check-config.sh', () => {
  it('passes when every option is in the config as asked (not set: absent or "is not set")', () => {
    const r = check(
      [
        '# a comment',
        '',
        'CONFIG_VIRTIO_BLK=y',
        'CONFIG_LOCALVERSION="-kata-guest"',
        '# CONFIG_MODULES is not set',
        '# CONFIG_FTRACE is not set',
      ].join('\n'),
      [
        'CONFIG_VIRTIO_BLK=y',
        'CONFIG_LOCALVERSION="-kata-guest"',
        '# CONFIG_MODULES is not set',
      ].join('\n'),
    );
    expect(r).toEqual({ status: 0, stderr: '' });
  });

  it('fails naming each option that was dropped, changed or turned on', () => {
    const r = check(
      [
        'CONFIG_9P_FS=y',
        'CONFIG_NR_CPUS=64',
        'CONFIG_EXT4_FS=y',
        '# CONFIG_MODULES is not set',
      ].join('\n'),
      ['CONFIG_NR_CPUS=8', 'CONFIG_EXT4_FS=y', 'CONFIG_MODULES=y', ''].join('\n'),
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('CONFIG_9P_FS did not survive: wanted y, got absent');
    expect(r.stderr).toContain('CONFIG_NR_CPUS did not survive: wanted 64, got CONFIG_NR_CPUS=8');
    expect(r.stderr).toContain(
      'CONFIG_MODULES did not survive: wanted not set, got CONFIG_MODULES=y',
    );
    expect(r.stderr).not.toContain('CONFIG_EXT4_FS');
    expect(r.stderr).toContain('3 option(s)');
  });

  it('does not take a prefix for the option (CONFIG_VIRTIO=y is not CONFIG_VIRTIO_BLK=y)', () => {
    const r = check('CONFIG_VIRTIO=y\n', '# CONFIG_VIRTIO is not set\nCONFIG_VIRTIO_BLK=y\n');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      'CONFIG_VIRTIO did not survive: wanted y, got # CONFIG_VIRTIO is not set',
    );
  });

  it('refuses missing files with a usage error', () => {
    const r = spawnSync('bash', [SCRIPT, path.join(dir, 'nope'), path.join(dir, 'nope2')], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('does not exist');
  });

  it('the checked-in fragment turns modules off and asks for every driver the guest boots with', () => {
    const fragment = readFileSync(path.join(REPO, 'guest/kernel/guest.config'), 'utf8');
    for (const line of [
      '# CONFIG_MODULES is not set',
      'CONFIG_PVH=y',
      'CONFIG_SERIAL_8250_CONSOLE=y',
      'CONFIG_VIRTIO_PCI=y',
      'CONFIG_VIRTIO_MMIO=y',
      'CONFIG_VIRTIO_CONSOLE=y',
      'CONFIG_VIRTIO_BLK=y',
      'CONFIG_VIRTIO_NET=y',
      'CONFIG_NET_9P_VIRTIO=y',
      'CONFIG_9P_FS=y',
      'CONFIG_EXT4_FS=y',
      'CONFIG_XFS_FS=y',
      'CONFIG_HOTPLUG_PCI_ACPI=y',
      'CONFIG_SECCOMP_FILTER=y',
      'CONFIG_CGROUP_BPF=y',
    ]) {
      expect(fragment.split('\n')).toContain(line);
    }
  });
});

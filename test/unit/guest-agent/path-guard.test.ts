import { describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import {
  guardContainerPath,
  guardPath,
  validateContainerId,
  validateId,
} from '../../../src/agent/guest/path-guard.js';
import { StatusError } from '../../../src/agent/guest/status-error.js';

function rejection(fn: () => unknown): StatusError {
  try {
    fn();
  } catch (err) {
    if (err instanceof StatusError) return err;
    throw err;
  }
  throw new Error('expected a StatusError');
}

describe('guardPath', () => {
  it('accepts normalized absolute paths under /run/kata-containers/', () => {
    expect(guardPath('m', '/run/kata-containers/shared/containers/')).toBe(
      '/run/kata-containers/shared/containers/',
    );
    expect(guardPath('m', '/run/kata-containers/shared/containers/c1/rootfs')).toBe(
      '/run/kata-containers/shared/containers/c1/rootfs',
    );
  });

  it('refuses ../../etc, naming the field and the root', () => {
    const err = rejection(() => guardPath('storages[0].mount_point', '../../etc'));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.message).toBe('storages[0].mount_point "../../etc" escapes /run/kata-containers/');
  });

  it.each([
    ['relative', 'run/kata-containers/x'],
    ['dot-dot inside', '/run/kata-containers/../../etc'],
    ['dot-dot at the end', '/run/kata-containers/x/..'],
    ['outside the root', '/etc/passwd'],
    ['a sibling with the same prefix', '/run/kata-containers-evil/x'],
    ['the root itself', '/run/kata-containers/'],
    ['the root without its slash', '/run/kata-containers'],
    ['a NUL byte', '/run/kata-containers/a\0b'],
    ['not normalized (//)', '/run/kata-containers//x'],
    ['not normalized (/./)', '/run/kata-containers/./x'],
    ['empty', ''],
  ])('refuses %s', (_name, value) => {
    const err = rejection(() => guardPath('OCI.root.path', value));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.message).toContain('OCI.root.path');
  });

  it('checks against another root when given', () => {
    expect(guardPath('devices[0].vm_path', '/dev/vda', '/dev/')).toBe('/dev/vda');
    expect(rejection(() => guardPath('devices[0].vm_path', '/dev/../etc', '/dev/')).message).toBe(
      'devices[0].vm_path "/dev/../etc" escapes /dev/',
    );
  });
});

describe('guardContainerPath', () => {
  it('accepts absolute normalized paths and refuses the rest', () => {
    expect(guardContainerPath('d', '/dev/xvda')).toBe('/dev/xvda');
    for (const bad of ['dev/xvda', '/dev/../etc/x', '/', '/a\0', '/a//b']) {
      expect(rejection(() => guardContainerPath('devices[0].container_path', bad)).code).toBe(
        status.INVALID_ARGUMENT,
      );
    }
  });
});

describe('ids', () => {
  it.each(['c1', 'a', 'A.b_c-d', 'f3f1b5b2-8c1e-4a57-9d5b-1c2d3e4f5a6b', 'x'.repeat(64)])(
    'accepts %s',
    (id) => {
      expect(validateId('exec_id', id)).toBe(id);
    },
  );

  it.each(['', '.', '..', '-a', '_a', 'a/b', 'a b', 'x'.repeat(65), 'a\0', '../etc'])(
    'refuses %j',
    (id) => {
      const err = rejection(() => validateId('container_id', id));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.message).toMatch(/^container_id /);
    },
  );

  it('refuses the container id that would clash with the shared directory', () => {
    expect(rejection(() => validateContainerId('container_id', 'shared')).message).toContain(
      'reserved',
    );
  });
});

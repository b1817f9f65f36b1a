import { describe, expect, it } from '@jest/globals';
import {
  DEFAULT_PATH,
  mergeEnv,
  resolveArgs,
  resolveSupplementalGroups,
  resolveUser,
  resolveWorkingDir,
} from '../../../src/agent/oci/image-config.js';

const image = {
  Entrypoint: ['/entry'],
  Cmd: ['--serve'],
  Env: ['PATH=/bin', 'A=1', 'B=2'],
  WorkingDir: '/app',
  User: '100:101',
};

describe('resolveArgs (Kubernetes command/args rules)', () => {
  it.each([
    [undefined, undefined, ['/entry', '--serve']],
    [['/bin/sh'], undefined, ['/bin/sh']],
    [undefined, ['--debug'], ['/entry', '--debug']],
    [['/bin/sh'], ['-c', 'echo'], ['/bin/sh', '-c', 'echo']],
    [[], [], ['/entry', '--serve']],
  ])('command %p args %p → %p', (command, args, want) => {
    expect(resolveArgs('spec.containers[0]', command, args, image)).toEqual(want);
  });

  it('uses only command/args without an image', () => {
    expect(resolveArgs('c', ['/bin/true'], undefined)).toEqual(['/bin/true']);
    expect(resolveArgs('c', undefined, ['/bin/echo', 'x'])).toEqual(['/bin/echo', 'x']);
  });

  it('refuses a container with nothing to run, naming the field', () => {
    expect(() => resolveArgs('spec.containers[1]', undefined, undefined)).toThrow(
      /^spec\.containers\[1\]\.command: nothing to run/,
    );
  });
});

describe('mergeEnv', () => {
  it('keeps image order, lets the container win, appends new names', () => {
    expect(
      mergeEnv(
        [
          { name: 'B', value: 'x' },
          { name: 'C', value: 'y' },
        ],
        image,
      ),
    ).toEqual([
      { name: 'PATH', value: '/bin' },
      { name: 'A', value: '1' },
      { name: 'B', value: 'x' },
      { name: 'C', value: 'y' },
    ]);
  });

  it('gives a default PATH when neither sets one, and keeps = inside values', () => {
    expect(mergeEnv([{ name: 'Q', value: 'a=b' }])).toEqual([
      { name: 'PATH', value: DEFAULT_PATH.slice(5) },
      { name: 'Q', value: 'a=b' },
    ]);
  });
});

describe('user and working dir', () => {
  it('prefers the container, then the image, then root and /', () => {
    expect(resolveUser('c', '5', image)).toBe('5');
    expect(resolveUser('c', undefined, image)).toBe('100:101');
    expect(resolveUser('c', undefined, {})).toBe('0');
    expect(resolveWorkingDir('/w', image)).toBe('/w');
    expect(resolveWorkingDir(undefined, image)).toBe('/app');
    expect(resolveWorkingDir(undefined, {})).toBe('/');
  });

  it("adds the image user's groups only when the image's user runs", () => {
    expect(resolveSupplementalGroups(undefined, [5, 10], [10, 20])).toEqual([10, 20, 5]);
    expect(resolveSupplementalGroups('7', [5], [10, 20])).toEqual([5]);
    expect(resolveSupplementalGroups(undefined, undefined, [])).toBeUndefined();
    expect(resolveSupplementalGroups(undefined, undefined, [10])).toEqual([10]);
  });

  it('refuses an image user given by name', () => {
    expect(() => resolveUser('spec.containers[0]', undefined, { User: 'nginx' })).toThrow(
      /^spec\.containers\[0\]\.user: the image's user "nginx" is a name/,
    );
  });
});

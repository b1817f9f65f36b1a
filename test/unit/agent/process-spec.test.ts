import { describe, expect, it } from '@jest/globals';
import { buildProcess, parseUser } from '../../../src/agent/process-spec.js';

const base = {
  args: ['/bin/sh', '-c', 'echo hi'],
  env: [{ name: 'A', value: 'b=c' }],
  cwd: '/work',
};

describe('parseUser', () => {
  it.each([
    ['0', { uid: 0, gid: 0 }],
    ['1000', { uid: 1000, gid: 0 }],
    ['1000:100', { uid: 1000, gid: 100 }],
    ['4294967295:4294967295', { uid: 4294967295, gid: 4294967295 }],
  ])('parses %s', (user, want) => {
    expect(parseUser(user)).toEqual(want);
  });

  it.each([
    ['1:2:3', /"1:2:3" has more than two parts/],
    ['x', /"x" is not a 32-bit unsigned number/],
    ['4294967296', /"4294967296" is not a 32-bit unsigned number/],
    ['1000:g', /"1000:g" is not a 32-bit unsigned number \(part "g"\)/],
    ['-1', /"-1"/],
    ['', /"" is not/],
    [' 1', /" 1"/],
  ])('refuses %s naming the value', (user, message) => {
    expect(() => parseUser(user)).toThrow(message);
    expect(() => parseUser(user)).toThrow(/^user: /);
  });
});

describe('buildProcess', () => {
  it('maps args, env as NAME=value, cwd and terminal', () => {
    const { process } = buildProcess({ ...base, terminal: true });
    expect(process.Args).toEqual(['/bin/sh', '-c', 'echo hi']);
    expect(process.Env).toEqual(['A=b=c']);
    expect(process.Cwd).toBe('/work');
    expect(process.Terminal).toBe(true);
    expect(process.User).toEqual({ UID: 0, GID: 0, AdditionalGids: [], Username: '' });
  });

  it('takes uid:gid from user, and primaryGroup overrides the gid', () => {
    expect(buildProcess({ ...base, user: '1000:1000' }).process.User?.GID).toBe(1000);
    const { process, stringUser } = buildProcess({ ...base, user: '1000:1000', primaryGroup: 5 });
    expect(process.User).toMatchObject({ UID: 1000, GID: 5 });
    expect(stringUser).toEqual({ uid: '1000', gid: '5', additionalGids: [] });
  });

  it('parses supplementary groups from integers (the CRD) or strings (the seed)', () => {
    const { process, stringUser } = buildProcess({ ...base, supplementalGroups: [10, '20'] });
    expect(process.User?.AdditionalGids).toEqual([10, 20]);
    expect(stringUser.additionalGids).toEqual(['10', '20']);
  });

  it.each([
    [{ supplementalGroups: [10, 'wheel'] }, /^supplementalGroups\[1\]: "wheel" is not a 32-bit/],
    [{ supplementalGroups: [-1] }, /^supplementalGroups\[0\]: "-1"/],
    [{ supplementalGroups: [1.5] }, /^supplementalGroups\[0\]: "1.5"/],
    [{ supplementalGroups: [4294967296] }, /^supplementalGroups\[0\]: "4294967296"/],
    [{ primaryGroup: 'staff' }, /^primaryGroup: "staff"/],
    [{ user: '1:2:3' }, /^user: "1:2:3"/],
  ])('refuses bad ids: %o', (extra, message) => {
    expect(() => buildProcess({ ...base, ...extra })).toThrow(message);
  });
});

import { describe, expect, it } from '@jest/globals';
import { parseImageReference } from '../../../src/node-agent/images/reference.js';
import {
  MAX_REGISTRY_KEY_LENGTH,
  MAX_REGISTRY_KEY_WILDCARDS,
  authFileContent,
  credentialsFor,
  hostMatches,
  labelMatches,
  registryKeyProblem,
  withUsableRegistryKeys,
} from '../../../src/node-agent/images/registry-auth.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const ref = parseImageReference;

describe('credentialsFor (kubelet keyring matching)', () => {
  it('decodes auth, or username/password, for the image registry and port', () => {
    const secrets = [
      {
        name: 'a',
        data: {
          auths: {
            '127.0.0.1:5000': { auth: b64('alice:pa:ss') },
            '127.0.0.1:6000': { username: 'bob', password: 'x' },
            '127.0.0.1': { username: 'noport', password: 'x' },
          },
        },
      },
    ];
    expect(credentialsFor(ref('127.0.0.1:5000/t/b:1'), secrets)).toEqual([
      { secret: 'a', key: '127.0.0.1:5000', username: 'alice', password: 'pa:ss' },
    ]);
    expect(credentialsFor(ref('127.0.0.1:6000/t/b:1'), secrets).map((c) => c.username)).toEqual([
      'bob',
    ]);
    expect(credentialsFor(ref('127.0.0.1/t/b:1'), secrets).map((c) => c.username)).toEqual([
      'noport',
    ]);
    expect(credentialsFor(ref('127.0.0.1:7000/t/b:1'), secrets)).toEqual([]);
  });

  it("maps Docker Hub's keys (https://index.docker.io/v1/, docker.io, …) to docker.io", () => {
    for (const key of [
      'https://index.docker.io/v1/',
      'index.docker.io',
      'docker.io',
      'registry-1.docker.io',
    ]) {
      const secrets = [{ name: 's', data: { auths: { [key]: { auth: b64('u:p') } } } }];
      expect(credentialsFor(ref('busybox'), secrets).map((c) => c.key)).toEqual([key]);
    }
  });

  it('orders by path specificity, then by Secret order; skips paths that do not match', () => {
    const secrets = [
      { name: 'first', data: { auths: { 'r.example': { auth: b64('host:1') } } } },
      {
        name: 'second',
        data: {
          auths: {
            'https://r.example/team': { auth: b64('team:2') },
            'r.example/team/app': { auth: b64('app:3') },
            'r.example/other': { auth: b64('other:4') },
            'r.example/te': { auth: b64('prefix-not-a-component:5') },
          },
        },
      },
      { name: 'third', data: { 'r.example': { auth: b64('legacy-dockercfg:6') } } },
    ];
    expect(credentialsFor(ref('r.example/team/app:1'), secrets).map((c) => c.username)).toEqual([
      'app',
      'team',
      'host',
      'legacy-dockercfg',
    ]);
  });

  it('matches * in a host label, one label only', () => {
    const secrets = [{ name: 's', data: { auths: { '*.example.com': { auth: b64('w:1') } } } }];
    expect(credentialsFor(ref('eu.example.com/a:1'), secrets)).toHaveLength(1);
    expect(credentialsFor(ref('a.eu.example.com/a:1'), secrets)).toHaveLength(0);
    expect(credentialsFor(ref('example.com/a:1'), secrets)).toHaveLength(0);
  });

  it('ignores entries it cannot read', () => {
    const secrets = [
      { name: 'bad', data: 'not an object' },
      { name: 'bad2', data: { auths: { 'r.example': { auth: b64('nocolon') } } } },
      { name: 'bad3', data: { auths: { 'r.example': {} } } },
      { name: 'ok', data: { auths: { 'r.example': { identitytoken: 'tok' } } } },
    ];
    expect(credentialsFor(ref('r.example/a:1'), secrets)).toEqual([
      { secret: 'ok', key: 'r.example', username: '', password: '', identityToken: 'tok' },
    ]);
  });
});

describe('host globs (kubelet: one glob per dot-separated label)', () => {
  it.each([
    ['*.example.com', 'eu.example.com', true],
    ['*.example.com', 'a.eu.example.com', false],
    ['*.example.com', 'example.com', false],
    ['*', 'localhost', true],
    ['*.*.example.com', 'a.b.example.com', true],
    ['reg-*.example.com', 'reg-eu.example.com', true],
    ['reg-*.example.com', 'eu.example.com', false],
    ['*-cache.example.com', 'eu-cache.example.com', true],
    ['r*g*y.io', 'registry.io', true],
    ['r*g*y.io', 'registr.io', false],
    ['r?g.io', 'reg.io', true],
    ['r?g.io', 'rg.io', false],
    ['**.io', 'x.io', true],
    ['*.io', '.io', true],
    ['quay.io', 'quay.io', true],
    ['quay.io', 'quay.iox', false],
  ])('%s vs %s → %s', (pattern, host, want) => {
    expect(hostMatches(pattern, host)).toBe(want);
  });

  it('matches labels without backtracking blow-up (issue 14 row 4: the key froze the agent)', () => {
    // Under the old regular expression each of these took exponential time; they must return.
    const label = 'a'.repeat(5_000);
    expect(labelMatches(`${'*'.repeat(5_000)}b`, label)).toBe(false);
    expect(labelMatches(`${'*a'.repeat(60)}b`, label)).toBe(false);
    expect(labelMatches(`${'*a'.repeat(60)}*`, label)).toBe(true);
    expect(hostMatches('************b.io', `${'a'.repeat(40)}.io`)).toBe(false);
    expect(hostMatches('************b.io', `${'a'.repeat(40)}b.io`)).toBe(true);
  });
});

describe('registry key limits', () => {
  const hostile = '************b.io';
  const creds = { auth: b64('u:p') };

  it('refuses keys with too many wildcards or too long, and says why', () => {
    expect(registryKeyProblem(hostile)).toBe('has 12 wildcards (at most 8)');
    expect(registryKeyProblem(`${'a'.repeat(MAX_REGISTRY_KEY_LENGTH)}.io`)).toMatch(
      /characters long/,
    );
    expect(registryKeyProblem('*'.repeat(MAX_REGISTRY_KEY_WILDCARDS) + '.io')).toBeUndefined();
    expect(registryKeyProblem('https://')).toBe('names no registry host');
    expect(registryKeyProblem('*.example.com:5000/team')).toBeUndefined();
  });

  it('credentialsFor ignores an over-limit key even when handed one', () => {
    const secrets = [{ name: 's', data: { auths: { [hostile]: creds, 'b.io': creds } } }];
    expect(credentialsFor(ref(`${'a'.repeat(40)}b.io/x:1`), secrets)).toEqual([]);
    expect(credentialsFor(ref('b.io/x:1'), secrets).map((c) => c.key)).toEqual(['b.io']);
  });

  it('drops over-limit keys when the Secret is decoded, one problem line each', () => {
    const secret = {
      name: 'pull',
      data: { auths: { [hostile]: creds, 'r.example': creds, ['x'.repeat(600)]: creds } },
    };
    const out = withUsableRegistryKeys('spec.imagePullSecrets[1]', secret);
    expect(out.secret).toEqual({ name: 'pull', data: { auths: { 'r.example': creds } } });
    expect(out.problems).toEqual([
      `spec.imagePullSecrets[1]: Secret "pull": registry key "${hostile}" has 12 wildcards (at most 8); ignored`,
      `spec.imagePullSecrets[1]: Secret "pull": registry key "${'x'.repeat(64)}…" is 600 characters long (at most 512); ignored`,
    ]);
    // A Secret whose keys are all fine is passed through as it was (legacy .dockercfg shape too).
    const legacy = { name: 'old', data: { 'r.example': creds } };
    expect(withUsableRegistryKeys('f', legacy)).toEqual({ secret: legacy, problems: [] });
  });
});

describe('authFileContent', () => {
  it('holds exactly one entry, for the image registry', () => {
    const text = authFileContent(ref('127.0.0.1:5000/t/b:1'), {
      secret: 's',
      key: 'http://127.0.0.1:5000/t',
      username: 'alice',
      password: 's3cret',
    });
    expect(JSON.parse(text)).toEqual({
      auths: { '127.0.0.1:5000': { auth: b64('alice:s3cret') } },
    });
  });

  it('carries an identity token', () => {
    const text = authFileContent(ref('r.example/a'), {
      secret: 's',
      key: 'r.example',
      username: '<token>',
      password: '',
      identityToken: 'refresh',
    });
    expect(JSON.parse(text).auths['r.example'].identitytoken).toBe('refresh');
  });
});

import { describe, expect, it } from '@jest/globals';
import { parseImageReference } from '../../../src/node-agent/images/reference.js';
import { authFileContent, credentialsFor } from '../../../src/node-agent/images/registry-auth.js';

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

import { describe, expect, it } from '@jest/globals';
import {
  proxyCertificateProblem,
  requestHeaderConfigFromConfigMap,
  userFromHeaders,
} from '../../../src/kata-api/front-proxy.js';

const cfg = requestHeaderConfigFromConfigMap({
  'requestheader-client-ca-file': 'PEM',
  'requestheader-allowed-names': '["front-proxy-client"]',
  'requestheader-username-headers': '["X-Remote-User"]',
  'requestheader-group-headers': '["X-Remote-Group"]',
  'requestheader-extra-headers-prefix': '["X-Remote-Extra-"]',
});

describe('the front proxy', () => {
  it('reads the settings kube-apiserver publishes, and refuses a plane without aggregation', () => {
    expect(cfg).toEqual({
      caPem: 'PEM',
      allowedNames: ['front-proxy-client'],
      usernameHeaders: ['X-Remote-User'],
      groupHeaders: ['X-Remote-Group'],
      extraHeaderPrefixes: ['X-Remote-Extra-'],
    });
    expect(() => requestHeaderConfigFromConfigMap({ 'client-ca-file': 'x' })).toThrow(
      /requestheader-client-ca-file/,
    );
  });

  it('trusts headers only over a verified certificate with an allowed name', () => {
    expect(
      proxyCertificateProblem({ authorized: false, commonName: 'front-proxy-client' }, cfg),
    ).toMatch(/request-header CA/);
    expect(proxyCertificateProblem({ authorized: true, commonName: 'someone' }, cfg)).toMatch(
      /not an allowed front proxy/,
    );
    expect(
      proxyCertificateProblem({ authorized: true, commonName: 'front-proxy-client' }, cfg),
    ).toBeUndefined();
    expect(
      proxyCertificateProblem({ authorized: true }, { ...cfg, allowedNames: [] }),
    ).toBeUndefined();
  });

  it('takes the user, every group and the extras (percent-decoded keys) from the headers', () => {
    expect(
      userFromHeaders(
        {
          'x-remote-user': 'alice',
          'x-remote-group': 'dev, system:authenticated',
          'x-remote-extra-scopes': ['a', 'b'],
          'x-remote-extra-example.org%2fteam': 'blue',
        },
        cfg,
      ),
    ).toEqual({
      username: 'alice',
      groups: ['dev', 'system:authenticated'],
      extra: { scopes: ['a', 'b'], 'example.org/team': ['blue'] },
    });
    expect(userFromHeaders({ 'x-remote-group': 'g' }, cfg)).toBeUndefined();
  });
});

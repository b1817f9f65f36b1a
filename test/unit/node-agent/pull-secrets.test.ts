import { describe, expect, it } from '@jest/globals';
import type { V1Secret } from '@kubernetes/client-node';
import { pullSecretFrom } from '../../../src/kube/pull-secret-projection.js';

const b64 = (o: unknown) =>
  Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64');

describe('pullSecretFrom', () => {
  it('decodes .dockerconfigjson and legacy .dockercfg', () => {
    const auths = { auths: { 'reg:5000': { auth: b64('u:p') } } };
    expect(
      pullSecretFrom('spec.imagePullSecrets[0]', {
        metadata: { name: 'cred' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': b64(auths) },
      }),
    ).toEqual({ name: 'cred', data: auths });
    expect(
      pullSecretFrom('f', {
        metadata: { name: 'old' },
        type: 'kubernetes.io/dockercfg',
        data: { '.dockercfg': b64({ 'reg:5000': { auth: b64('u:p') } }) },
      }),
    ).toEqual({ name: 'old', data: { 'reg:5000': { auth: b64('u:p') } } });
  });

  it('names the field and what is wrong with an unusable Secret', () => {
    const s = (x: Partial<V1Secret>): V1Secret => ({ metadata: { name: 'x' }, ...x });
    expect(pullSecretFrom('spec.imagePullSecrets[1]', s({ type: 'Opaque', data: {} }))).toBe(
      'spec.imagePullSecrets[1]: Secret "x" has type "Opaque", not kubernetes.io/dockerconfigjson',
    );
    expect(pullSecretFrom('f', s({ type: 'kubernetes.io/dockerconfigjson', data: {} }))).toBe(
      'f: Secret "x" has no .dockerconfigjson key',
    );
    expect(
      pullSecretFrom(
        'f',
        s({ type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('{nope') } }),
      ),
    ).toMatch(/^f: Secret "x" .dockerconfigjson is not JSON: /);
  });
});

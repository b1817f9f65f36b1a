import { describe, expect, it } from '@jest/globals';
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { pullSecretFrom, readPullSecrets } from '../../../src/node-agent/pull-secrets.js';

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

describe('readPullSecrets', () => {
  it('reports an over-limit registry key as a problem and keeps the rest of the Secret', async () => {
    const hostile = '************b.io';
    const auths = { auths: { [hostile]: { auth: b64('u:p') }, 'reg:5000': { auth: b64('u:p') } } };
    const core = {
      readNamespacedSecret: ({ name }: { name: string }) =>
        Promise.resolve({
          metadata: { name },
          type: 'kubernetes.io/dockerconfigjson',
          data: { '.dockerconfigjson': b64(auths) },
        } satisfies V1Secret),
    } as unknown as CoreV1Api;
    const read = await readPullSecrets({ core }, 'ns', [{ name: 'other' }, { name: 'cred' }]);
    expect(read.secrets).toEqual([
      { name: 'other', data: { auths: { 'reg:5000': { auth: b64('u:p') } } } },
      { name: 'cred', data: { auths: { 'reg:5000': { auth: b64('u:p') } } } },
    ]);
    expect(read.problems).toEqual([
      `spec.imagePullSecrets[0]: Secret "other": registry key "${hostile}" has 12 wildcards (at most 8); ignored`,
      `spec.imagePullSecrets[1]: Secret "cred": registry key "${hostile}" has 12 wildcards (at most 8); ignored`,
    ]);
  });
});

import { describe, expect, it } from '@jest/globals';
import { parseImageReference } from '../../../src/node-agent/images/reference.js';
import {
  isInsecureRegistry,
  skopeoCopyArgs,
  skopeoInspectRawArgs,
  umociUnpackArgs,
} from '../../../src/node-agent/images/tool-args.js';

const D = `sha256:${'e'.repeat(64)}`;
const access = { insecure: false, policyFile: '/c/policy.json', tmpDir: '/c/tmp' };

describe('skopeo and umoci argv', () => {
  it('inspects anonymously and with TLS verification by default', () => {
    expect(skopeoInspectRawArgs(parseImageReference('q.io/a:1'), access)).toEqual([
      '--policy',
      '/c/policy.json',
      '--tmpdir',
      '/c/tmp',
      'inspect',
      '--raw',
      '--retry-times',
      '2',
      '--tls-verify=true',
      '--no-creds',
      'docker://q.io/a:1',
    ]);
  });

  it('copies the resolved digest with the auth file of this pull, TLS off only when insecure', () => {
    const args = skopeoCopyArgs(
      parseImageReference('127.0.0.1:5000/t/b:1'),
      D,
      '/c/tmp/p/layout',
      'image',
      {
        ...access,
        insecure: true,
        authFile: '/c/tmp/auth-x/auth.json',
      },
    );
    expect(args).toEqual([
      '--policy',
      '/c/policy.json',
      '--tmpdir',
      '/c/tmp',
      'copy',
      '--quiet',
      '--retry-times',
      '2',
      '--src-tls-verify=false',
      '--src-authfile',
      '/c/tmp/auth-x/auth.json',
      `docker://127.0.0.1:5000/t/b@${D}`,
      'oci:/c/tmp/p/layout:image',
    ]);
  });

  it('unpacks a layout tag into a bundle', () => {
    expect(umociUnpackArgs('/l', 'image', '/b')).toEqual(['unpack', '--image', '/l:image', '/b']);
  });

  it('treats only listed registries as insecure (host and port, any case)', () => {
    expect(isInsecureRegistry('127.0.0.1:5000', ['127.0.0.1:5000'])).toBe(true);
    expect(isInsecureRegistry('127.0.0.1:5001', ['127.0.0.1:5000'])).toBe(false);
    expect(isInsecureRegistry('127.0.0.1', ['127.0.0.1:5000'])).toBe(false);
    expect(isInsecureRegistry('Reg.Local:80', ['reg.local:80'])).toBe(true);
    expect(isInsecureRegistry('docker.io', [])).toBe(false);
  });
});

import { describe, expect, it } from '@jest/globals';
import { IMAGE_REFERENCE_PATTERN } from '../../../src/crds/katasandbox.js';
import {
  InvalidImageNameError,
  dockerTransportName,
  formatReference,
  parseImageReference,
  resolutionKey,
} from '../../../src/node-agent/images/reference.js';

const D = `sha256:${'ab'.repeat(32)}`;

describe('parseImageReference', () => {
  it.each([
    ['busybox', 'docker.io', 'library/busybox', 'latest', undefined],
    ['busybox:1.36', 'docker.io', 'library/busybox', '1.36', undefined],
    ['library/busybox', 'docker.io', 'library/busybox', 'latest', undefined],
    ['bitnami/redis:7', 'docker.io', 'bitnami/redis', '7', undefined],
    ['docker.io/busybox', 'docker.io', 'library/busybox', 'latest', undefined],
    ['index.docker.io/busybox:1', 'docker.io', 'library/busybox', '1', undefined],
    ['registry-1.docker.io/org/app:2', 'docker.io', 'org/app', '2', undefined],
    ['quay.io/org/app:v1.2.3', 'quay.io', 'org/app', 'v1.2.3', undefined],
    ['localhost/app', 'localhost', 'app', 'latest', undefined],
    ['localhost:5000/a/b/c:x', 'localhost:5000', 'a/b/c', 'x', undefined],
    ['127.0.0.1:5000/test/busybox:1', '127.0.0.1:5000', 'test/busybox', '1', undefined],
    ['Registry/app', 'Registry', 'app', 'latest', undefined],
    [`busybox@${D}`, 'docker.io', 'library/busybox', undefined, D],
    [`ghcr.io/o/a:1@${D}`, 'ghcr.io', 'o/a', '1', D],
    ['r.example/a__b/c.d-e--f:T_1', 'r.example', 'a__b/c.d-e--f', 'T_1', undefined],
  ])('%s', (image, registry, repository, tag, digest) => {
    const ref = parseImageReference(image);
    expect(ref).toEqual({
      registry,
      repository,
      ...(tag !== undefined && { tag }),
      ...(digest !== undefined && { digest }),
    });
  });

  it.each([
    ['', 'empty'],
    [' busybox', 'whitespace'],
    ['docker://busybox', 'scheme'],
    ['Busybox', 'lowercase'],
    ['quay.io/Org/app', 'lowercase'],
    ['busybox:', 'invalid tag'],
    ['busybox:-x', 'invalid tag'],
    [`busybox:${'a'.repeat(129)}`, 'invalid tag'],
    ['busybox@sha256:abc', 'invalid digest'],
    [`busybox@sha256:${'AB'.repeat(32)}`, 'invalid digest'],
    ['a//b', 'path component'],
    ['a/-b', 'path component'],
    ['a_/b', 'path component'],
    [':tag', 'missing repository'],
    ['bad_host.example:port/x', 'invalid registry'],
    [`r.example/${'a'.repeat(256)}`, 'longer than 255'],
  ])('refuses %p (%s)', (image, why) => {
    expect(() => parseImageReference(image)).toThrow(InvalidImageNameError);
    expect(() => parseImageReference(image)).toThrow(why);
  });

  it('carries Kubernetes reason InvalidImageName', () => {
    try {
      parseImageReference('UPPER');
      throw new Error('no throw');
    } catch (err) {
      expect((err as InvalidImageNameError).reason).toBe('InvalidImageName');
      expect((err as Error).message).toContain('"UPPER"');
    }
  });
});

describe('forms of a reference', () => {
  it('formats the normalized name', () => {
    expect(formatReference(parseImageReference('busybox'))).toBe(
      'docker.io/library/busybox:latest',
    );
    expect(formatReference(parseImageReference(`q.io/a:1@${D}`))).toBe(`q.io/a:1@${D}`);
  });

  it('keys a pinned reference by digest, others by tag', () => {
    expect(resolutionKey(parseImageReference('busybox:1'))).toBe('docker.io/library/busybox:1');
    expect(resolutionKey(parseImageReference(`q.io/a:1@${D}`))).toBe(`q.io/a@${D}`);
  });

  it('gives skopeo a digest alone when there is one (it refuses tag+digest)', () => {
    const tagged = parseImageReference('127.0.0.1:5000/t/b:1');
    expect(dockerTransportName(tagged)).toBe('docker://127.0.0.1:5000/t/b:1');
    expect(dockerTransportName(tagged, D)).toBe(`docker://127.0.0.1:5000/t/b@${D}`);
    expect(dockerTransportName(parseImageReference(`q.io/a:1@${D}`))).toBe(`docker://q.io/a@${D}`);
  });
});

describe("the CRD's reference rule and this parser", () => {
  const crd = new RegExp(IMAGE_REFERENCE_PATTERN);
  const parses = (r: string): boolean => {
    try {
      parseImageReference(r);
      return true;
    } catch {
      return false;
    }
  };

  it('accept and refuse the same references (the parser also caps the name at 255)', () => {
    const corpus = [
      'busybox',
      'busybox:1.36',
      'library/busybox:latest',
      'docker.io/library/busybox',
      'index.docker.io/busybox',
      'localhost/app',
      'localhost:5000/app:v1',
      '127.0.0.1:5000/test/busybox:1',
      '[::1]:5000/x/y',
      'Registry.Example.COM/team/app_name-2:1.0_rc',
      'reg.example/a__b/c.d/e---f',
      `q.io/a:1@${D}`,
      `q.io/a@sha512:${'c'.repeat(128)}`,
      'UPPER/case',
      'UPPER',
      'Busybox:1',
      'reg.example/Team/app',
      'busybox@sha256:abc',
      `busybox@sha256:${'AB'.repeat(32)}`,
      'busybox:',
      'busybox:-tag',
      `busybox:${'t'.repeat(129)}`,
      '/busybox',
      'busybox/',
      'a//b',
      'a-/b',
      '-a/b',
      'a.b_/c',
      'reg:99999x/a',
      'http://reg/a',
      'a b',
      '',
    ];
    for (const r of corpus) expect({ r, crd: crd.test(r) }).toEqual({ r, crd: parses(r) });
    const long = `reg.example/${'a'.repeat(300)}`;
    expect([crd.test(long), parses(long)]).toEqual([true, false]);
  });
});

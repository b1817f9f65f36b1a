import { describe, expect, it } from '@jest/globals';
import {
  ManifestError,
  hostPlatform,
  imageConfigFromBlob,
  parseManifest,
  selectPlatform,
  sha256Digest,
} from '../../../src/node-agent/images/oci-manifest.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe('parseManifest', () => {
  it('reads an image manifest (OCI or Docker schema 2)', () => {
    const m = {
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { digest: d('1'), size: 10 },
      layers: [
        { digest: d('2'), size: 100 },
        { digest: d('3'), size: 50 },
      ],
    };
    expect(parseManifest(JSON.stringify(m))).toEqual({
      kind: 'manifest',
      configDigest: d('1'),
      layers: [
        { digest: d('2'), size: 100 },
        { digest: d('3'), size: 50 },
      ],
    });
  });

  it('reads an index with platforms', () => {
    const idx = {
      schemaVersion: 2,
      manifests: [
        { digest: d('a'), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { digest: d('b'), platform: { os: 'linux', architecture: 'amd64' } },
        { digest: d('c') },
      ],
    };
    expect(parseManifest(Buffer.from(JSON.stringify(idx)))).toEqual({
      kind: 'index',
      entries: [
        { digest: d('a'), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { digest: d('b'), platform: { os: 'linux', architecture: 'amd64' } },
        { digest: d('c') },
      ],
    });
  });

  it.each([
    ['{', 'not JSON'],
    ['[]', 'neither'],
    ['{"schemaVersion":1,"fsLayers":[]}', 'schema 1'],
  ])('refuses %s', (text, why) => {
    expect(() => parseManifest(text)).toThrow(ManifestError);
    expect(() => parseManifest(text)).toThrow(why);
  });

  it('digests the bytes as served', () => {
    expect(sha256Digest('')).toBe(
      'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });
});

describe('selectPlatform', () => {
  const entries = [
    { digest: d('a'), platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
    { digest: d('b'), platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
    { digest: d('c'), platform: { os: 'linux', architecture: 'amd64' } },
    { digest: d('e'), platform: { os: 'linux', architecture: 'arm64' } },
  ];
  it('matches os, architecture and variant', () => {
    expect(selectPlatform(entries, hostPlatform('x64'))).toBe(d('c'));
    expect(selectPlatform(entries, hostPlatform('arm'))).toBe(d('b'));
    expect(selectPlatform(entries, hostPlatform('arm64'))).toBe(d('e'));
  });
  it('says what the index has when nothing matches', () => {
    expect(() => selectPlatform(entries, { os: 'linux', architecture: 's390x' })).toThrow(
      'no image for linux/s390x in the image index (it has: linux/arm, linux/arm, linux/amd64, linux/arm64)',
    );
  });
});

describe('imageConfigFromBlob', () => {
  it('takes Entrypoint, Cmd, Env, WorkingDir and User', () => {
    const blob = {
      architecture: 'amd64',
      config: {
        Entrypoint: ['/bin/sh', '-c'],
        Cmd: ['echo hi'],
        Env: ['PATH=/bin', 'A=1'],
        WorkingDir: '/work',
        User: 'app',
        Labels: { x: 'y' },
      },
    };
    expect(imageConfigFromBlob(JSON.stringify(blob))).toEqual({
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: ['echo hi'],
      Env: ['PATH=/bin', 'A=1'],
      WorkingDir: '/work',
      User: 'app',
    });
  });
  it('treats null and empty as unset, and a config-less image as empty', () => {
    expect(imageConfigFromBlob('{"config":{"Entrypoint":null,"WorkingDir":"","User":""}}')).toEqual(
      {},
    );
    expect(imageConfigFromBlob('{}')).toEqual({});
  });
  it('refuses lists that are not of strings', () => {
    expect(() => imageConfigFromBlob('{"config":{"Cmd":"echo"}}')).toThrow('Cmd is not a list');
  });
});

// The stderr lines are skopeo 1.9's, captured against Debian's docker-registry.
import { describe, expect, it } from '@jest/globals';
import {
  ImagePullError,
  classifyPullFailure,
  pullResultLabel,
  toolMessage,
} from '../../../src/node-agent/images/pull-errors.js';

const fatal = (msg: string) =>
  `time="2026-11-28T23:41:24Z" level=fatal msg="${msg.replace(/"/g, '\\"')}"\n`;

describe('toolMessage and classifyPullFailure', () => {
  it.each([
    [
      'Error parsing image name "docker://127.0.0.1:5055/test/busybox:2": reading manifest 2 in 127.0.0.1:5055/test/busybox: manifest unknown: manifest unknown',
      'reading manifest 2 in 127.0.0.1:5055/test/busybox: manifest unknown: manifest unknown',
      'NotFound',
    ],
    [
      'Error parsing image name "docker://127.0.0.1:5057/private/busybox:1": reading manifest 1 in 127.0.0.1:5057/private/busybox: unauthorized: authentication required',
      'reading manifest 1 in 127.0.0.1:5057/private/busybox: unauthorized: authentication required',
      'Unauthorized',
    ],
    [
      'Error parsing image name "docker://127.0.0.1:5056/test/busybox:1": pinging container registry 127.0.0.1:5056: Get "http://127.0.0.1:5056/v2/": dial tcp 127.0.0.1:5056: connect: connection refused',
      'pinging container registry 127.0.0.1:5056: Get "http://127.0.0.1:5056/v2/": dial tcp 127.0.0.1:5056: connect: connection refused',
      'Unreachable',
    ],
    [
      'Error parsing image name "docker://127.0.0.1:5055/test/busybox:1": pinging container registry 127.0.0.1:5055: Get "https://127.0.0.1:5055/v2/": http: server gave HTTP response to HTTPS client',
      'pinging container registry 127.0.0.1:5055: Get "https://127.0.0.1:5055/v2/": http: server gave HTTP response to HTTPS client',
      'TLS',
    ],
    [
      'reading manifest 1 in docker.io/library/x: requested access to the resource is denied',
      'reading manifest 1 in docker.io/library/x: requested access to the resource is denied',
      'Unauthorized',
    ],
    ['Get "https://r.example/v2/": dial tcp 10.0.0.1:443: i/o timeout', undefined, 'Timeout'],
    [
      'reading manifest: toomanyrequests: You have reached your pull rate limit',
      undefined,
      'TooManyRequests',
    ],
    ['something else', undefined, 'Other'],
  ])('%s', (msg, want, kind) => {
    const got = toolMessage(fatal(msg));
    expect(got).toBe(want ?? msg);
    expect(classifyPullFailure(got)).toBe(kind);
  });

  it('falls back to the last stderr line when there is no msg=', () => {
    expect(toolMessage('first\nError: no such thing\n\n')).toBe('Error: no such thing');
  });
});

describe('ImagePullError', () => {
  it('reads like kubelet', () => {
    const e = new ImagePullError('ErrImagePull', 'NotFound', 'r/x:2', 'manifest unknown');
    expect(e.message).toBe('Failed to pull image "r/x:2": manifest unknown');
    expect(new ImagePullError('ErrImageNeverPull', 'NotFound', 'r/x:2', '').message).toBe(
      'Container image "r/x:2" is not present with pull policy of Never',
    );
  });

  it('labels results in snake case', () => {
    expect(pullResultLabel('success')).toBe('success');
    expect(pullResultLabel('TooManyRequests')).toBe('too_many_requests');
    expect(pullResultLabel('NotFound')).toBe('not_found');
  });
});

import { describe, expect, it } from '@jest/globals';
import {
  isAllowedRegistryEntry,
  registryAllowed,
} from '../../../src/node-agent/images/registry-allow.js';

describe('registryAllowed (--allowed-registries)', () => {
  const list = ['127.0.0.1:5000', '*.corp.example', 'docker.io', '[::1]:5001'];
  it.each([
    ['127.0.0.1:5000', true],
    ['127.0.0.1:5001', false],
    ['127.0.0.1', false],
    ['eu.corp.example', true],
    ['EU.Corp.Example', true],
    ['a.eu.corp.example', false],
    ['corp.example', false],
    ['eu.corp.example:443', false],
    ['docker.io', true],
    ['[::1]:5001', true],
    ['evil.example', false],
  ])('%s → %s', (registry, want) => {
    expect(registryAllowed(registry, list)).toBe(want);
  });

  it('allows everything when the list is empty; Hub aliases name docker.io', () => {
    expect(registryAllowed('evil.example', [])).toBe(true);
    expect(registryAllowed('docker.io', ['index.docker.io'])).toBe(true);
  });

  it('accepts host[:port] entries with globs, nothing with a scheme, path or empty label', () => {
    for (const ok of ['reg.example', '*.example.com', 'r?g.io:5000', '[::1]', 'localhost']) {
      expect(isAllowedRegistryEntry(ok)).toBe(true);
    }
    for (const bad of ['https://reg', 'reg/x', 'a..b', '.x', 'reg:port', '', 'x'.repeat(300)]) {
      expect(isAllowedRegistryEntry(bad)).toBe(false);
    }
  });
});

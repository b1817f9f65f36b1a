import { describe, expect, it } from '@jest/globals';
import type { KataSandbox } from '../../../src/crds/index.js';
import { NodeLoadIndex, placementOf } from '../../../src/controllers/node-load-index.js';

const sb = (over: { node?: string; memoryMiB?: number; phase?: string } = {}): KataSandbox =>
  ({
    metadata: {
      name: 'x',
      namespace: 'ns',
      labels: over.node ? { 'kata.sandbox.io/node': over.node } : {},
    },
    spec: { containers: [], ...(over.memoryMiB ? { vm: { memoryMiB: over.memoryMiB } } : {}) },
    status: over.phase ? { phase: over.phase } : undefined,
  }) as unknown as KataSandbox;

describe('placementOf', () => {
  it('a bound sandbox holds its memory (default 512 MiB) until it has ended', () => {
    expect(placementOf(sb({ node: 'a', memoryMiB: 1024 }))).toEqual({ node: 'a', memoryMiB: 1024 });
    expect(placementOf(sb({ node: 'a' }))).toEqual({ node: 'a', memoryMiB: 512 });
    expect(placementOf(sb({ node: 'a', phase: 'Running' }))).toBeDefined();
    expect(placementOf(sb({ node: 'a', phase: 'Succeeded' }))).toBeUndefined();
    expect(placementOf(sb({ node: 'a', phase: 'Failed' }))).toBeUndefined();
    expect(placementOf(sb())).toBeUndefined();
  });
});

describe('NodeLoadIndex', () => {
  it('follows adds, updates (rebinding, ending) and deletes of the cache', () => {
    const idx = new NodeLoadIndex();
    idx.set('ns/1', sb({ node: 'a', memoryMiB: 1024 }));
    idx.set('ns/2', sb({ node: 'a' }));
    idx.set('ns/3', sb());
    expect(idx.loadOf('a')).toEqual({ sandboxes: 2, memoryMiB: 1536 });
    idx.set('ns/1', sb({ node: 'a', memoryMiB: 1024 })); // a resync: no double count
    expect(idx.loadOf('a')).toEqual({ sandboxes: 2, memoryMiB: 1536 });
    idx.set('ns/2', sb({ node: 'a', phase: 'Succeeded' }));
    expect(idx.loadOf('a')).toEqual({ sandboxes: 1, memoryMiB: 1024 });
    idx.set('ns/1', undefined);
    expect(idx.loadOf('a')).toEqual({ sandboxes: 0, memoryMiB: 0 });
    expect(idx.loadOf('never')).toEqual({ sandboxes: 0, memoryMiB: 0 });
  });

  it('a reservation counts until the cache shows the binding, then counts once', () => {
    const idx = new NodeLoadIndex();
    idx.set('ns/1', sb());
    idx.reserve('ns/1', { node: 'b', memoryMiB: 512 });
    expect(idx.loadOf('b')).toEqual({ sandboxes: 1, memoryMiB: 512 });
    idx.set('ns/1', sb()); // an unrelated update before the bind's own event
    expect(idx.loadOf('b')).toEqual({ sandboxes: 1, memoryMiB: 512 });
    idx.set('ns/1', sb({ node: 'b' }));
    expect(idx.loadOf('b')).toEqual({ sandboxes: 1, memoryMiB: 512 });
  });

  it('a failed bind releases its reservation; a deleted sandbox drops it', () => {
    const idx = new NodeLoadIndex();
    idx.reserve('ns/1', { node: 'b', memoryMiB: 512 });
    idx.release('ns/1');
    expect(idx.loadOf('b')).toEqual({ sandboxes: 0, memoryMiB: 0 });
    idx.reserve('ns/2', { node: 'b', memoryMiB: 512 });
    idx.set('ns/2', undefined);
    expect(idx.loadOf('b')).toEqual({ sandboxes: 0, memoryMiB: 0 });
  });
});

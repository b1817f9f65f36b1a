import { describe, expect, it } from '@jest/globals';
import type { KubernetesObject } from '@kubernetes/client-node';
import {
  classifyWatchEvent,
  isNewer,
  ObjectCache,
  objectKey,
  splitKey,
} from '../../../src/kube/object-cache.js';

const obj = (name: string, rv: string, namespace: string | null = 'ns'): KubernetesObject => ({
  metadata: { name, namespace: namespace ?? undefined, resourceVersion: rv },
});

describe('keys', () => {
  it('are namespace/name, or name for cluster-scoped objects, and split back', () => {
    expect(objectKey(obj('a', '1'))).toBe('ns/a');
    expect(objectKey(obj('node1', '1', null))).toBe('node1');
    expect(splitKey('ns/a')).toEqual({ namespace: 'ns', name: 'a' });
    expect(splitKey('node1')).toEqual({ name: 'node1' });
  });
});

describe('classifyWatchEvent', () => {
  it('maps ADDED/MODIFIED to upsert and DELETED to delete, with the resourceVersion', () => {
    expect(classifyWatchEvent({ type: 'ADDED', object: obj('a', '5') })).toMatchObject({
      kind: 'upsert',
      resourceVersion: '5',
    });
    expect(classifyWatchEvent({ type: 'MODIFIED', object: obj('a', '6') })).toMatchObject({
      kind: 'upsert',
      resourceVersion: '6',
    });
    expect(classifyWatchEvent({ type: 'DELETED', object: obj('a', '7') })).toMatchObject({
      kind: 'delete',
      resourceVersion: '7',
    });
  });

  it('takes the resourceVersion from a BOOKMARK', () => {
    expect(
      classifyWatchEvent({
        type: 'BOOKMARK',
        object: { kind: 'ConfigMap', metadata: { resourceVersion: '99' } },
      }),
    ).toEqual({ kind: 'bookmark', resourceVersion: '99' });
  });

  it('turns ERROR 410 / Expired into gone, other errors into error', () => {
    expect(
      classifyWatchEvent({
        type: 'ERROR',
        object: {
          kind: 'Status',
          code: 410,
          reason: 'Expired',
          message: 'too old resource version',
        },
      }),
    ).toEqual({ kind: 'gone', message: 'too old resource version' });
    expect(classifyWatchEvent({ type: 'ERROR', object: { reason: 'Gone' } })).toMatchObject({
      kind: 'gone',
    });
    expect(classifyWatchEvent({ type: 'ERROR', object: { code: 500, message: 'boom' } })).toEqual({
      kind: 'error',
      code: 500,
      message: 'boom',
    });
    expect(classifyWatchEvent({ type: 'WEIRD', object: {} })).toMatchObject({ kind: 'error' });
    expect(classifyWatchEvent({ type: 'ADDED', object: undefined })).toMatchObject({
      kind: 'error',
    });
  });
});

describe('isNewer', () => {
  it('compares integer resourceVersions numerically, beyond 2^53', () => {
    expect(isNewer(obj('a', '10'), obj('a', '9'))).toBe(true);
    expect(isNewer(obj('a', '9'), obj('a', '10'))).toBe(false);
    expect(isNewer(obj('a', '9007199254740993'), obj('a', '9007199254740992'))).toBe(true);
    expect(isNewer(obj('a', '5'), obj('a', '5'))).toBe(false);
  });

  it('treats opaque versions as newer when different', () => {
    expect(isNewer(obj('a', 'x'), obj('a', 'y'))).toBe(true);
    expect(isNewer(obj('a', 'x'), obj('a', 'x'))).toBe(false);
  });
});

describe('ObjectCache', () => {
  it('adds, updates and deletes, reporting each change', () => {
    const c = new ObjectCache<KubernetesObject>();
    expect(c.upsert(obj('a', '1'))).toMatchObject({ type: 'add' });
    expect(c.upsert(obj('a', '2'))).toMatchObject({
      type: 'update',
      old: { metadata: { resourceVersion: '1' } },
    });
    expect(c.get('ns/a')?.metadata?.resourceVersion).toBe('2');
    expect(c.delete(obj('a', '3'))).toMatchObject({
      type: 'delete',
      obj: { metadata: { resourceVersion: '3' } },
    });
    expect(c.size).toBe(0);
    expect(c.delete(obj('a', '4'))).toBeUndefined();
  });

  it('ignores an event older than what it holds', () => {
    const c = new ObjectCache<KubernetesObject>();
    c.upsert(obj('a', '5'));
    expect(c.upsert(obj('a', '4'))).toBeUndefined();
    expect(c.upsert(obj('a', '5'))).toBeUndefined();
    expect(c.get('ns/a')?.metadata?.resourceVersion).toBe('5');
  });

  it('replace() reports deletions, additions and changed objects only', () => {
    const c = new ObjectCache<KubernetesObject>();
    c.replace([obj('keep', '1'), obj('change', '1'), obj('gone', '1')]);
    const changes = c.replace([obj('keep', '1'), obj('change', '2'), obj('new', '3')]);
    expect(changes.map((x) => `${x.type}:${x.obj.metadata?.name}`).sort()).toEqual([
      'add:new',
      'delete:gone',
      'update:change',
    ]);
    expect(c.keys().sort()).toEqual(['ns/change', 'ns/keep', 'ns/new']);
  });

  it('replace(all) reports unchanged objects as updates too (a resync)', () => {
    const c = new ObjectCache<KubernetesObject>();
    c.replace([obj('a', '1'), obj('b', '1')]);
    expect(c.replace([obj('a', '1'), obj('b', '1')], true).map((x) => x.type)).toEqual([
      'update',
      'update',
    ]);
    expect(c.list()).toHaveLength(2);
  });
});

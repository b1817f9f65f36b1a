import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { newSandboxState, StateStore } from '../../../src/node-agent/state-store.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'state-store-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const meta = (uid: string) => ({ uid, namespace: 'ns', name: `n-${uid}` });

describe('StateStore', () => {
  it('saves, loads, lists and removes', async () => {
    const store = new StateStore(dir);
    const s = newSandboxState(meta('a1'), new Date(0));
    s.bindMounts.push('/x');
    await store.save(s);
    expect(await store.load('a1')).toEqual(s);
    expect(await store.listUids()).toEqual(['a1']);
    await store.remove('a1');
    expect(await store.load('a1')).toBeUndefined();
    expect(await store.listUids()).toEqual([]);
  });

  it('concurrent saves leave one complete file and no temporaries', async () => {
    const store = new StateStore(dir);
    const saves = Array.from({ length: 20 }, (_, i) => {
      const s = newSandboxState(meta('b2'), new Date(0));
      s.bindMounts = Array.from({ length: i * 50 }, (_v, j) => `/mnt/${j}`);
      return store.save(s);
    });
    await Promise.all(saves);
    const text = readFileSync(store.fileOf('b2'), 'utf8');
    const parsed = JSON.parse(text) as { bindMounts: string[] };
    expect(parsed.bindMounts.length % 50).toBe(0);
    expect(readdirSync(store.dirOf('b2'))).toEqual(['state.json']);
  });

  it('refuses a uid that could escape the state dir', () => {
    const store = new StateStore(dir);
    expect(() => store.dirOf('../etc')).toThrow(/invalid sandbox uid/);
  });

  it('lists a directory whose state file is missing, and load says undefined', async () => {
    const store = new StateStore(dir);
    mkdirSync(store.dirOf('c3'), { recursive: true });
    expect(await store.listUids()).toContain('c3');
    expect(await store.load('c3')).toBeUndefined();
    writeFileSync(store.fileOf('c3'), '{"version":99}');
    await expect(store.load('c3')).rejects.toThrow(/unexpected version/);
  });
});

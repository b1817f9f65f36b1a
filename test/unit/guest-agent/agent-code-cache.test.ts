// The guest agent's code cache (guest/agent-code-cache.mjs) and loader (guest/agent-loader.cjs),
// on the host with this node binary, laid out as in the image: the agent bundle made as
// guest/build.sh makes it, its cache, the loader as /usr/bin/kata-guest-agent.js. The loader must
// say the cache was accepted and the agent must answer Health.Check; a cache V8 rejects (made
// under other flags) or none must still start the agent; the same inputs must give the same cache.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../../../src/agent/agent-client.js';
import { bundleGuestAgent } from '../../fixtures/agent-bundle.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MAKER = path.join(REPO, 'guest/agent-code-cache.mjs');
const LOADER = path.join(REPO, 'guest/agent-loader.cjs');
const IN_IMAGE = '/usr/lib/kata-guest-agent/agent.cjs';
// No NODE_OPTIONS (Jest's own would change V8's flags, and so the cache's check).
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS'));

let scratch = '';
let bundle = '';

beforeAll(() => {
  scratch = mkdtempSync(path.join(tmpdir(), 'agent-code-cache-test-'));
  bundle = path.join(scratch, 'agent.cjs');
  bundleGuestAgent(bundle);
}, 180_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** The maker's TMPDIR: empty again after every run (its scratch socket dir is gone). */
function makerTmp(): string {
  const d = path.join(scratch, 'tmp');
  mkdirSync(d, { recursive: true });
  return d;
}

/** Makes a cache of the bundle with node `flags`, as guest/build.sh does; returns its bytes. */
function makeCache(out: string, flags: string[] = []): Buffer {
  const r = spawnSync(
    process.execPath,
    ['--random-seed=1', ...flags, MAKER, bundle, out, IN_IMAGE],
    {
      env: { ...env, TMPDIR: makerTmp() },
      encoding: 'utf8',
      timeout: 90_000,
    },
  );
  expect(readdirSync(makerTmp())).toEqual([]);
  expect({ status: r.status, stderr: r.stderr }).toEqual({
    status: 0,
    stderr: expect.stringContaining('bytes of code cache'),
  });
  return readFileSync(out);
}

/** An image-like root with the loader, the bundle and (optionally) a cache. */
function layout(name: string, cache?: Buffer): string {
  const root = path.join(scratch, name);
  mkdirSync(path.join(root, 'usr/bin'), { recursive: true });
  mkdirSync(path.join(root, 'usr/lib/kata-guest-agent'), { recursive: true });
  copyFileSync(LOADER, path.join(root, 'usr/bin/kata-guest-agent.js'));
  copyFileSync(bundle, path.join(root, IN_IMAGE));
  if (cache) writeFileSync(path.join(root, `${IN_IMAGE}.cache`), cache);
  return root;
}

/** Starts the agent through the loader, waits for a Health.Check answer; returns the loader's line. */
async function startAndCheck(root: string): Promise<string> {
  const socketPath = path.join(root, 'agent.sock');
  const child = spawn(
    process.execPath,
    [path.join(root, 'usr/bin/kata-guest-agent.js'), '--no-port', '--socket', socketPath],
    { env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`agent exited (${code}): ${stderr}`))),
  );
  const client = new AgentClient({ socketPath, maxTimeoutMs: 10_000 });
  try {
    const listening = (async () => {
      const deadline = Date.now() + 30_000;
      while (!stderr.includes('agent gRPC server listening')) {
        if (Date.now() > deadline) throw new Error(`the agent did not listen: ${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await Promise.race([listening, exited]);
    expect(await Promise.race([client.check({ timeoutMs: 10_000 }), exited])).toBe(true);
    return /kata-guest-agent-loader: ([^\n]*)/.exec(stderr)?.[1] ?? `no loader line in: ${stderr}`;
  } finally {
    client.close();
    child.removeAllListeners('exit');
    child.kill('SIGKILL');
  }
}

describe('the guest agent through its loader with a V8 code cache', () => {
  it('accepts the cache made at build time and answers Health.Check', async () => {
    const cache = makeCache(path.join(scratch, 'a.cache'));
    expect(cache.length).toBeGreaterThan(100_000); // the start's functions, not just the top level
    const line = await startAndCheck(layout('accepted', cache));
    expect(line).toMatch(/^code cache accepted \(\d+ bytes\)/);
  });

  it('gives the same cache bytes for the same bundle and node (a reproducible image)', () => {
    const a = makeCache(path.join(scratch, 'r1.cache'));
    const b = makeCache(path.join(scratch, 'r2.cache'));
    expect(a.equals(b)).toBe(true);
  });

  it('falls back to a plain compile when V8 rejects the cache (made under other flags)', async () => {
    const cache = makeCache(path.join(scratch, 'other-flags.cache'), ['--no-opt']);
    const line = await startAndCheck(layout('rejected', cache));
    expect(line).toMatch(/^code cache rejected \(\d+ bytes\): compiled without it/);
  });

  it('starts without a cache file', async () => {
    expect(await startAndCheck(layout('none'))).toMatch(/^no code cache/);
  });

  it('refuses to cache a bundle that is not ASCII (the loader reads it as latin1)', () => {
    const nonAscii = path.join(scratch, 'non-ascii.cjs');
    writeFileSync(nonAscii, '// caf\u00e9\n');
    const r = spawnSync(
      process.execPath,
      [MAKER, nonAscii, path.join(scratch, 'x.cache'), IN_IMAGE],
      {
        env: { ...env, TMPDIR: makerTmp() },
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('is not ASCII');
    expect(readdirSync(makerTmp())).toEqual([]);
  });
});

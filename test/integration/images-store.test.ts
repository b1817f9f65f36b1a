// The image cache against a real registry (Debian's docker-registry on 127.0.0.1), real skopeo,
// umoci and overlay mounts; no VM and no cluster (the integration project's control plane is not
// used here). Needs root (unpack ownership, mounts).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { lstat, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import {
  ContainerImages,
  ImagePullError,
  ImageStore,
  RootfsViews,
  pullGate,
  recordPullFailure,
  registerImageMetrics,
  type ImageMetrics,
  type ImageStoreOptions,
  type PullSecret,
} from '../../src/node-agent/images/index.js';
import { readMountInfo } from '../../src/node-agent/storage/mountinfo.js';
import {
  buildBusyboxImage,
  dockerConfigJson,
  pushImage,
  proxyRegistry,
  startRegistry,
  type TestRegistry,
} from './images-registry.js';
import { eventually } from './controller-harness.js';

const CREDS = { username: 'alice', password: 's3cret-pw' };
const IMAGE = {
  entrypoint: ['/bin/sh', '-c'],
  cmd: ['echo "$GREETING from $(pwd)"'],
  env: ['GREETING=hello-from-image', 'PATH=/bin'],
  workingDir: '/srv',
  files: { 'srv/marker': 'v1\n' },
};

let work: string;
let reg: TestRegistry;
let privateReg: TestRegistry;
let layoutV1: string;
let layoutV2: string;
let digestV1: string;
const stores: ImageStore[] = [];

async function newStore(
  extra: Partial<ImageStoreOptions> = {},
): Promise<{ store: ImageStore; metrics: ImageMetrics; registry: Registry; root: string }> {
  const registry = new Registry();
  const metrics = registerImageMetrics(registry);
  const root = extra.root ?? (await mkdtemp(path.join(work, 'store-')));
  const store = await ImageStore.open({
    root,
    maxBytes: 1 << 30,
    insecureRegistries: [reg.host, privateReg.host],
    metrics,
    ...extra,
  });
  stores.push(store);
  return { store, metrics, registry, root };
}

async function eventuallyTrue(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * An attacker's registry on loopback: answers /v2/ and serves, for evil/app:latest, an OCI index
 * whose only entry is whatever digest it is told; everything else is unknown.
 */
async function startIndexServer(): Promise<{
  host: string;
  indexOf(digest: string): void;
  stop(): Promise<void>;
}> {
  let target = '';
  const server = http.createServer((req, res) => {
    if (req.url === '/v2/') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    if (req.url === '/v2/evil/app/manifests/latest' && target !== '') {
      const body = JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: target,
            size: 500,
            platform: { architecture: 'amd64', os: 'linux' },
          },
        ],
      });
      res
        .writeHead(200, {
          'content-type': 'application/vnd.oci.image.index.v1+json',
          'docker-content-digest': `sha256:${createHash('sha256').update(body).digest('hex')}`,
          'content-length': Buffer.byteLength(body),
        })
        .end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    res
      .writeHead(404, { 'content-type': 'application/json' })
      .end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    indexOf: (digest) => (target = digest),
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}) {
  const m = await registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

/** A listing of a tree with file contents hashed: to prove the cached image never changes. */
async function treeDigest(dir: string): Promise<string> {
  const h = createHash('sha256');
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = path.join(d, name);
      const st = await lstat(p);
      h.update(`${path.relative(dir, p)} ${st.mode} ${st.uid}:${st.gid}\n`);
      if (st.isDirectory()) await walk(p);
      else if (st.isSymbolicLink()) h.update(await readlink(p));
      else h.update(await readFile(p));
    }
  };
  await walk(dir);
  return h.digest('hex');
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'kata-images-'));
  reg = await startRegistry();
  privateReg = await startRegistry({ auth: CREDS });
  layoutV1 = await buildBusyboxImage(work, IMAGE);
  layoutV2 = await buildBusyboxImage(work, { ...IMAGE, files: { 'srv/marker': 'v2\n' } });
  digestV1 = await pushImage(layoutV1, reg, 'test/busybox:1');
}, 120_000);

afterAll(async () => {
  await reg?.stop();
  await privateReg?.stop();
  const views = path.join(work ?? '/nonexistent', 'views');
  const left = (await readMountInfo()).filter((m) => m.mountPoint.startsWith(`${work}/`));
  expect(left).toEqual([]);
  await rm(views, { recursive: true, force: true });
  if (work) await rm(work, { recursive: true, force: true });
});

/** Live skopeo processes whose command line names `host` (a registry only this test uses). */
function skopeoPidsFor(host: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (path.basename(argv[0] ?? '') === 'skopeo' && argv.some((a) => a.includes(host)))
      pids.push(Number(entry));
  }
  return pids;
}

describe('image store against a real registry', () => {
  it('pulls, unpacks and reads the config; a second pull of the reference is a counted cache hit', async () => {
    const { store, registry } = await newStore();
    const first = await store.ensureImage({
      image: `${reg.host}/test/busybox:1`,
      sandboxUid: 'sb-1',
    });
    expect(first).toMatchObject({
      outcome: 'pulled',
      digest: digestV1,
      reference: `${reg.host}/test/busybox:1`,
      config: {
        Entrypoint: ['/bin/sh', '-c'],
        Cmd: ['echo "$GREETING from $(pwd)"'],
        Env: ['GREETING=hello-from-image', 'PATH=/bin'],
        WorkingDir: '/srv',
      },
    });
    expect(first.downloadedBytes).toBeGreaterThan(100_000);
    expect(first.bytes).toBeGreaterThan(first.downloadedBytes);
    expect(await readFile(path.join(first.rootfs, 'srv/marker'), 'utf8')).toBe('v1\n');
    expect((await lstat(path.join(first.rootfs, 'bin/busybox'))).isFile()).toBe(true);
    expect(await readlink(path.join(first.rootfs, 'bin/sh'))).toBe('busybox');
    expect(store.toolRuns).toEqual({ inspect: 1, copy: 1, unpack: 1 });

    let pulling = 0;
    const second = await store.ensureImage({
      image: `${reg.host}/test/busybox:1`,
      sandboxUid: 'sb-2',
      onPulling: () => pulling++,
    });
    expect(second).toMatchObject({ outcome: 'cache-hit', digest: digestV1, rootfs: first.rootfs });
    expect(pulling).toBe(0);
    expect(store.toolRuns).toEqual({ inspect: 1, copy: 1, unpack: 1 });
    expect(await metricValue(registry, 'kata_node_image_cache_hits_total')).toBe(1);
    expect(await metricValue(registry, 'kata_node_image_pulls_total', { result: 'success' })).toBe(
      1,
    );
    expect(await metricValue(registry, 'kata_node_image_cache_bytes')).toBe(first.bytes);
    const hist = await registry.getSingleMetric('kata_node_image_pull_duration_seconds')?.get();
    const count = hist?.values.find((v) =>
      (v as { metricName?: string }).metricName?.endsWith('_count'),
    );
    expect(count?.value).toBe(1);

    // The digest reference: the same image, straight from the cache.
    const pinned = await store.ensureImage({
      image: `${reg.host}/test/busybox@${digestV1}`,
      sandboxUid: 'sb-3',
    });
    expect(pinned).toMatchObject({ outcome: 'cache-hit', digest: digestV1 });
    expect(store.toolRuns.inspect).toBe(1);
    expect(store.list()[0]?.holders).toEqual(['sb-1', 'sb-2', 'sb-3']);

    // Restart: the cache, its references and the leases are still there.
    const again = await ImageStore.open({
      root: store.root,
      maxBytes: 1 << 30,
      insecureRegistries: [reg.host],
    });
    expect(again.list()).toEqual(store.list());
    const hit = await again.ensureImage({
      image: `${reg.host}/test/busybox:1`,
      sandboxUid: 'sb-4',
    });
    expect(hit.outcome).toBe('cache-hit');
    expect(again.toolRuns).toEqual({ inspect: 0, copy: 0, unpack: 0 });
    expect(await again.releaseAllExcept(new Set(['sb-4']))).toEqual(['sb-1', 'sb-2', 'sb-3']);
    expect(again.list()[0]?.holders).toEqual(['sb-4']);
  });

  it('pulls a digest reference into an empty cache, and never contacts the registry for it again, even with Always', async () => {
    // Counted at the registry's door (a proxy in front of it), not by the store's own counters.
    const door = await proxyRegistry(reg.host);
    try {
      const { store } = await newStore({ insecureRegistries: [door.host] });
      const image = `${door.host}/test/busybox@${digestV1}`;
      const a = await store.ensureImage({ image, sandboxUid: 'a' });
      expect(a).toMatchObject({ outcome: 'pulled', digest: digestV1 });
      const afterPull = door.requests;
      expect(afterPull).toBeGreaterThan(0);
      const b = await store.ensureImage({ image, policy: 'Always', sandboxUid: 'b' });
      expect(b.outcome).toBe('cache-hit');
      const c = await store.ensureImage({ image, sandboxUid: 'c' });
      expect(c.outcome).toBe('cache-hit');
      expect(door.requests).toBe(afterPull);
    } finally {
      await door.close();
    }
  });

  it('Always asks the registry every time and follows a moved tag; IfNotPresent keeps what it has', async () => {
    const { store, registry } = await newStore();
    const image = `${reg.host}/test/moving:1`;
    const oldDigest = await pushImage(layoutV1, reg, 'test/moving:1');
    const a = await store.ensureImage({ image, policy: 'Always', sandboxUid: 'a' });
    expect(a).toMatchObject({ outcome: 'pulled', digest: oldDigest });
    const b = await store.ensureImage({ image, policy: 'Always', sandboxUid: 'b' });
    expect(b).toMatchObject({ outcome: 'up-to-date', digest: oldDigest });
    expect(store.toolRuns).toEqual({ inspect: 2, copy: 1, unpack: 1 });

    const newDigest = await pushImage(layoutV2, reg, 'test/moving:1');
    expect(newDigest).not.toBe(oldDigest);
    const c = await store.ensureImage({ image, policy: 'IfNotPresent', sandboxUid: 'c' });
    expect(c).toMatchObject({ outcome: 'cache-hit', digest: oldDigest });
    const d = await store.ensureImage({ image, policy: 'Always', sandboxUid: 'd' });
    expect(d).toMatchObject({ outcome: 'pulled', digest: newDigest });
    expect(await readFile(path.join(d.rootfs, 'srv/marker'), 'utf8')).toBe('v2\n');
    // The tag now names the new image for everyone.
    const e = await store.ensureImage({ image, policy: 'IfNotPresent', sandboxUid: 'e' });
    expect(e.digest).toBe(newDigest);
    expect(await metricValue(registry, 'kata_node_image_pulls_total', { result: 'success' })).toBe(
      3,
    );
  });

  it('Never uses only what is cached (ErrImageNeverPull otherwise)', async () => {
    const { store } = await newStore();
    const image = `${reg.host}/test/busybox:1`;
    await expect(
      store.ensureImage({ image, policy: 'Never', sandboxUid: 'a' }),
    ).rejects.toMatchObject({
      reason: 'ErrImageNeverPull',
      message: `Container image "${image}" is not present with pull policy of Never`,
    });
    expect(store.toolRuns.inspect).toBe(0);
    await store.ensureImage({ image, sandboxUid: 'a' });
    const n = await store.ensureImage({ image, policy: 'Never', sandboxUid: 'b' });
    expect(n.outcome).toBe('cache-hit');
  });

  it('pulls from a private repository with an imagePullSecret, fails clearly without, leaves no auth file', async () => {
    const { store, registry } = await newStore();
    const digest = await pushImage(layoutV1, privateReg, 'private/busybox:1');
    const image = `${privateReg.host}/private/busybox:1`;

    const anonymous = await store.ensureImage({ image, sandboxUid: 'a' }).catch((e: unknown) => e);
    expect(anonymous).toBeInstanceOf(ImagePullError);
    expect(anonymous).toMatchObject({ reason: 'ErrImagePull', kind: 'Unauthorized' });
    expect((anonymous as Error).message).toBe(
      `Failed to pull image "${image}": reading manifest 1 in ${privateReg.host}/private/busybox: unauthorized: authentication required`,
    );

    const wrong = await store
      .ensureImage({
        image,
        sandboxUid: 'a',
        pullSecrets: [
          {
            name: 'wrong',
            data: dockerConfigJson(privateReg.host, { username: 'alice', password: 'nope' }),
          },
        ],
      })
      .catch((e: unknown) => e);
    expect(wrong).toMatchObject({ reason: 'ErrImagePull', kind: 'Unauthorized' });

    const ok = await store.ensureImage({
      image,
      sandboxUid: 'b',
      pullSecrets: [
        { name: 'other-registry', data: dockerConfigJson(reg.host, CREDS) },
        { name: 'regcred', data: dockerConfigJson(privateReg.host, CREDS) },
      ],
    });
    expect(ok).toMatchObject({ outcome: 'pulled', digest });
    expect(await readdir(path.join(store.root, 'tmp'))).toEqual([]);
    expect(
      await metricValue(registry, 'kata_node_image_pulls_total', { result: 'unauthorized' }),
    ).toBe(2);

    // A sandbox without the Secret does not get the private image from the cache.
    const sneaky = await store.ensureImage({ image, sandboxUid: 'c' }).catch((e: unknown) => e);
    expect(sneaky).toMatchObject({ reason: 'ErrImagePull', kind: 'Unauthorized' });
    // One with it does, without downloading again.
    const withSecret = await store.ensureImage({
      image,
      sandboxUid: 'd',
      pullSecrets: [{ name: 'regcred', data: dockerConfigJson(privateReg.host, CREDS) }],
    });
    expect(withSecret.outcome).toBe('cache-hit');
    expect(store.toolRuns.copy).toBe(1);
  });

  it('a privately pulled image goes to another sandbox only after it proves access to the source repository (issue 14 row 15)', async () => {
    const source = await startRegistry({ auth: CREDS, accessLog: true });
    const port = source.host.split(':')[1] ?? '';
    const alias = `localhost:${port}`;
    const evil = await startIndexServer();
    try {
      const digest = await pushImage(layoutV2, source, 'team/app:1');
      const insecureRegistries = [reg.host, source.host, alias, evil.host];
      const { store, root } = await newStore({ insecureRegistries });
      const right = (host: string) => ({ name: 'right', data: dockerConfigJson(host, CREDS) });
      const wrong = (host: string) => ({
        name: 'wrong',
        data: dockerConfigJson(host, { username: 'alice', password: 'nope' }),
      });
      const blobGets = () =>
        source.requests().filter((r) => r.startsWith('GET /v2/team/app/blobs/')).length;
      const manifestByDigest = () =>
        source.requests().filter((r) => r.includes(`/v2/team/app/manifests/${digest}`)).length;

      const a = await store.ensureImage({
        image: `${source.host}/team/app:1`,
        sandboxUid: 'a',
        pullSecrets: [right(source.host)],
      });
      expect(a).toMatchObject({ outcome: 'pulled', digest });
      const pulledBlobs = blobGets();
      expect(pulledBlobs).toBeGreaterThan(0);

      // A registry of B's choosing that serves an index naming A's digest: it proves nothing.
      evil.indexOf(digest);
      const refused = async (image: string, secrets: PullSecret[], on = store) => {
        const err = await on
          .ensureImage({ image, sandboxUid: 'b', pullSecrets: secrets })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ImagePullError);
        expect(err).toMatchObject({ reason: 'ErrImagePull', kind: 'Unauthorized' });
        return (err as Error).message;
      };
      expect(await refused(`${evil.host}/evil/app:latest`, [])).toContain(
        `pulled with credentials from ${source.host}/team/app`,
      );
      await refused(`${evil.host}/evil/app:latest`, [wrong(source.host)]);
      // Another name of the same registry, without or with wrong credentials.
      await refused(`${alias}/team/app@${digest}`, []);
      await refused(`${alias}/team/app@${digest}`, [wrong(alias), wrong(source.host)]);
      expect(store.holders().get('b')).toBeUndefined();

      // After a restart nothing is remembered as proven; B with the right credentials for the
      // source may use the cached copy, even naming the other registry: a manifest request by
      // digest at the source, no blob downloaded again.
      const { store: restarted } = await newStore({ insecureRegistries, root });
      const b = await restarted.ensureImage({
        image: `${evil.host}/evil/app:latest`,
        sandboxUid: 'b',
        pullSecrets: [right(source.host)],
      });
      expect(b).toMatchObject({ outcome: 'up-to-date', digest, downloadedBytes: 0 });
      await eventuallyTrue(() => manifestByDigest() > 0);
      expect(blobGets()).toBe(pulledBlobs);
      expect(restarted.toolRuns.copy).toBe(0);
      // Proven once, then a cache hit for that credential.
      const again = await restarted.ensureImage({
        image: `${source.host}/team/app@${digest}`,
        sandboxUid: 'c',
        pullSecrets: [right(source.host)],
      });
      expect(again.outcome).toBe('cache-hit');

      // Credentials only for the alias: the source cannot be asked with them, so the proof is a
      // full copy from the registry the sandbox named (blobs fetched again, then dropped).
      const { store: third } = await newStore({ insecureRegistries, root });
      const d = await third.ensureImage({
        image: `${alias}/team/app@${digest}`,
        sandboxUid: 'd',
        pullSecrets: [right(alias)],
      });
      expect(d).toMatchObject({ outcome: 'up-to-date', digest });
      await eventuallyTrue(() => blobGets() > pulledBlobs);
      expect(await readdir(path.join(root, 'tmp'))).toEqual([]);

      // A public image (pulled anonymously) stays shareable without credentials.
      const pub = await third.ensureImage({ image: `${reg.host}/test/busybox:1`, sandboxUid: 'e' });
      const other = await third.ensureImage({
        image: `${reg.host}/test/busybox@${pub.digest}`,
        sandboxUid: 'f',
      });
      expect(other.outcome).toBe('cache-hit');
      evil.indexOf(pub.digest);
      // The same content behind credentials too: once a sandbox reached it with credentials it is
      // private, proven at that repository; the public name still works, proven by a full copy.
      await pushImage(layoutV1, source, 'team/base:1');
      await third.ensureImage({
        image: `${source.host}/team/base:1`,
        sandboxUid: 'g',
        pullSecrets: [right(source.host)],
      });
      expect(await refused(`${source.host}/team/base:1`, [], third)).toMatch(/unauthorized/);
      expect(await refused(`${evil.host}/evil/app:latest`, [], third)).toMatch(/unauthorized/);
      const viaPublic = await third.ensureImage({
        image: `${reg.host}/test/busybox:1`,
        sandboxUid: 'h',
      });
      expect(viaPublic).toMatchObject({ outcome: 'up-to-date', digest: pub.digest });
    } finally {
      await evil.stop();
      await source.stop();
    }
  });

  it('--allowed-registries: an image from another registry is refused before any request to it (issue 14 row 16)', async () => {
    const elsewhere = await startRegistry({ accessLog: true });
    try {
      await pushImage(layoutV1, elsewhere, 'test/busybox:1');
      const before = elsewhere.requests().length;
      const { store } = await newStore({ insecureRegistries: [reg.host, elsewhere.host] });
      const views = new RootfsViews({
        root: path.join(work, 'views'),
        lowerRoots: [store.imagesDir],
      });
      const images = new ContainerImages({ store, views, allowedRegistries: [reg.host] });
      const prepare = (image: string) =>
        images.prepare({
          sandboxUid: 'allow-list',
          container: 'main',
          image,
          pullSecrets: () => Promise.resolve([]),
          signal: new AbortController().signal,
          onWaiting: () => undefined,
          onEvent: () => undefined,
        });
      await expect(prepare(`${elsewhere.host}/test/busybox:1`)).rejects.toThrow(
        `container main: registry "${elsewhere.host}" is not in this node's allowed registries (${reg.host})`,
      );
      expect(store.toolRuns).toEqual({ inspect: 0, copy: 0, unpack: 0 });
      // The registry's own log: nothing was asked of it.
      await new Promise((r) => setTimeout(r, 500));
      expect(elsewhere.requests().length).toBe(before);
      // The allowed registry is pulled from as usual.
      const ok = await prepare(`${reg.host}/test/busybox:1`);
      expect(ok.handle.outcome).toBe('pulled');
      await images.release('allow-list');
    } finally {
      await elsewhere.stop();
    }
  });

  it('a missing tag is ErrImagePull with the registry message, backs off, then succeeds once pushed', async () => {
    const { store, registry } = await newStore();
    const image = `${reg.host}/test/late:1`;
    const err = await store.ensureImage({ image, sandboxUid: 'a' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImagePullError);
    expect(err).toMatchObject({ reason: 'ErrImagePull', kind: 'NotFound' });
    expect((err as Error).message).toBe(
      `Failed to pull image "${image}": reading manifest 1 in ${reg.host}/test/late: manifest unknown: manifest unknown`,
    );
    expect(
      await metricValue(registry, 'kata_node_image_pulls_total', { result: 'not_found' }),
    ).toBe(1);

    const backoff = recordPullFailure(undefined, 0, (err as ImagePullError).detail);
    expect(pullGate(backoff, 1_000, image)).toMatchObject({
      pull: false,
      reason: 'ImagePullBackOff',
      message: `Back-off pulling image "${image}": reading manifest 1 in ${reg.host}/test/late: manifest unknown: manifest unknown`,
    });

    await pushImage(layoutV1, reg, 'test/late:0');
    const tagErr = await store.ensureImage({ image, sandboxUid: 'a' }).catch((e: unknown) => e);
    expect((tagErr as Error).message).toBe(
      `Failed to pull image "${image}": reading manifest 1 in ${reg.host}/test/late: manifest unknown: manifest unknown`,
    );

    await pushImage(layoutV1, reg, 'test/late:1');
    expect(pullGate(backoff, 10_000, image)).toEqual({ pull: true });
    const ok = await store.ensureImage({ image, sandboxUid: 'a' });
    expect(ok).toMatchObject({ outcome: 'pulled', digest: digestV1 });
  });

  it('an unreachable registry and a registry not listed as insecure fail with their causes', async () => {
    const { store } = await newStore({ insecureRegistries: [] });
    const tls = await store
      .ensureImage({ image: `${reg.host}/test/busybox:1`, sandboxUid: 'a' })
      .catch((e: unknown) => e);
    expect(tls).toMatchObject({ reason: 'ErrImagePull', kind: 'TLS' });
    expect((tls as Error).message).toContain('server gave HTTP response to HTTPS client');

    const closed = await startRegistry();
    await closed.stop();
    const { store: s2 } = await newStore({ insecureRegistries: [closed.host] });
    const refused = await s2
      .ensureImage({ image: `${closed.host}/test/busybox:1`, sandboxUid: 'a' })
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ reason: 'ErrImagePull', kind: 'Unreachable' });
    expect((refused as Error).message).toContain('connection refused');

    await expect(s2.ensureImage({ image: 'Bad/Name', sandboxUid: 'a' })).rejects.toMatchObject({
      reason: 'InvalidImageName',
    });
  });

  it('concurrent pulls of one reference run skopeo once; a cancelled waiter does not cancel the others', async () => {
    const { store } = await newStore();
    const image = `${reg.host}/test/busybox:1`;
    const leaving = new AbortController();
    const pulls = ['a', 'b', 'c'].map((uid) => store.ensureImage({ image, sandboxUid: uid }));
    const cancelled = store
      .ensureImage({ image, sandboxUid: 'gone', signal: leaving.signal })
      .catch((e: unknown) => e);
    leaving.abort(new Error('sandbox deleted'));
    const results = await Promise.all(pulls);
    expect(await cancelled).toMatchObject({ reason: 'ErrImagePull', kind: 'Canceled' });
    expect(new Set(results.map((r) => r.digest))).toEqual(new Set([digestV1]));
    expect(results.filter((r) => r.outcome === 'pulled')).toHaveLength(3);
    expect(store.toolRuns).toEqual({ inspect: 1, copy: 1, unpack: 1 });
    expect(store.list()[0]?.holders).toEqual(['a', 'b', 'c']);
  });

  it('a pull whose every waiter is cancelled kills skopeo and leaves nothing behind', async () => {
    // The registry's door holds every request: skopeo stays mid-pull until it is stopped.
    const door = await proxyRegistry(reg.host);
    door.hold = true;
    try {
      const { store } = await newStore({ insecureRegistries: [door.host] });
      const c = new AbortController();
      const p = store.ensureImage({
        image: `${door.host}/test/busybox:1`,
        sandboxUid: 'a',
        signal: c.signal,
      });
      const failed = p.catch((e: unknown) => e);
      const pids = await eventually('skopeo waiting on the registry', async () => {
        const found = skopeoPidsFor(door.host);
        return found.length > 0 && door.requests > 0 ? found : undefined;
      });
      c.abort(new Error('sandbox deleted'));
      expect(await failed).toMatchObject({ reason: 'ErrImagePull', kind: 'Canceled' });
      await eventually('skopeo gone', async () =>
        pids.every((pid) => !existsSync(`/proc/${pid}`)) ? true : undefined,
      );
      // The killed tool's cleanup runs after the rejection: give it a moment.
      await eventually('the pull’s scratch removed', async () =>
        (await readdir(path.join(store.root, 'tmp'))).length === 0 ? true : undefined,
      );
      expect(store.list()).toEqual([]);
    } finally {
      await door.close();
    }
  });

  it('evicts least recently used images that no sandbox holds once over the size limit', async () => {
    const digestA = await pushImage(layoutV1, reg, 'test/evict-a:1');
    const digestB = await pushImage(layoutV2, reg, 'test/evict-b:1');
    const { store } = await newStore({ maxBytes: 1 });
    const a = await store.ensureImage({ image: `${reg.host}/test/evict-a:1`, sandboxUid: 'x' });
    await store.ensureImage({ image: `${reg.host}/test/evict-b:1`, sandboxUid: 'y' });
    // Both held: over the limit, nothing evicted.
    expect(
      store
        .list()
        .map((i) => i.digest)
        .sort(),
    ).toEqual([digestA, digestB].sort());
    await store.release('x');
    expect(store.list().map((i) => i.digest)).toEqual([digestB]);
    await expect(lstat(a.rootfs)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readdir(path.join(store.root, 'trash'))).toEqual([]);
    await store.release('y');
    expect(store.list()).toEqual([]);
    expect(store.totalBytes()).toBe(0);
  });

  it('resolves a named image user to uid:gid and its groups from the image', async () => {
    const layout = await buildBusyboxImage(work, { entrypoint: ['/bin/id'], user: 'app' });
    await pushImage(layout, reg, 'test/named-user:1');
    const { store } = await newStore();
    const img = await store.ensureImage({
      image: `${reg.host}/test/named-user:1`,
      sandboxUid: 'a',
    });
    expect(img.config.User).toBe('1001:1002');
    expect(img.userGroups).toEqual([10]);
  });
});

describe('per-sandbox copy-on-write views', () => {
  it('two sandboxes writing to / do not see each other, and the cached image is unchanged', async () => {
    const { store } = await newStore({ maxBytes: 1 });
    const views = new RootfsViews({
      root: path.join(work, 'views'),
      lowerRoots: [store.imagesDir],
    });
    const img = await store.ensureImage({
      image: `${reg.host}/test/busybox:1`,
      sandboxUid: 'sb-a',
    });
    await store.ensureImage({ image: `${reg.host}/test/busybox:1`, sandboxUid: 'sb-b' });
    const before = await treeDigest(img.rootfs);

    const a = await views.prepare({ sandboxUid: 'sb-a', container: 'main', lowerDir: img.rootfs });
    const b = await views.prepare({ sandboxUid: 'sb-b', container: 'main', lowerDir: img.rootfs });
    // Idempotent: a second prepare returns the same mount.
    expect(
      await views.prepare({ sandboxUid: 'sb-a', container: 'main', lowerDir: img.rootfs }),
    ).toEqual(a);

    await writeFile(path.join(a.merged, 'written-by-a'), 'a\n');
    await writeFile(path.join(b.merged, 'written-by-b'), 'b\n');
    await writeFile(path.join(a.merged, 'srv/marker'), 'changed by a\n');
    await rm(path.join(b.merged, 'bin/cat'));

    expect((await readdir(a.merged)).sort()).toContain('written-by-a');
    expect(await readdir(a.merged)).not.toContain('written-by-b');
    expect(await readdir(b.merged)).not.toContain('written-by-a');
    expect(await readFile(path.join(a.merged, 'srv/marker'), 'utf8')).toBe('changed by a\n');
    expect(await readFile(path.join(b.merged, 'srv/marker'), 'utf8')).toBe('v1\n');
    expect(await readdir(path.join(a.merged, 'bin'))).toContain('cat');
    expect(await readdir(path.join(b.merged, 'bin'))).not.toContain('cat');
    expect((await lstat(a.merged)).mode).toBe((await lstat(img.rootfs)).mode);
    expect(await treeDigest(img.rootfs)).toBe(before);

    // An image in use as a lower layer is never evicted, whatever the limit.
    await store.release('sb-a');
    await store.release('sb-b');
    expect(await store.evict()).toEqual([]);

    await views.teardown('sb-a');
    await views.teardown('sb-a');
    await views.teardown('sb-b', 'main');
    const left = (await readMountInfo()).filter((m) => m.mountPoint.startsWith(views.root));
    expect(left).toEqual([]);
    expect(await views.sandboxes()).toEqual([]);
    expect(await treeDigest(img.rootfs)).toBe(before);
  });

  it('refuses lower dirs outside the image roots and ids that could escape', async () => {
    const views = new RootfsViews({
      root: path.join(work, 'views'),
      lowerRoots: [path.join(work, 'nowhere')],
    });
    await expect(
      views.prepare({ sandboxUid: 'u', container: 'main', lowerDir: '/etc' }),
    ).rejects.toThrow('is not under the image roots');
    await expect(
      views.prepare({ sandboxUid: '../x', container: 'main', lowerDir: '/etc' }),
    ).rejects.toThrow('invalid sandbox uid');
    await expect(
      views.prepare({ sandboxUid: 'u', container: '../main', lowerDir: '/etc' }),
    ).rejects.toThrow('invalid container name');
  });
});

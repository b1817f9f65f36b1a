// KataSandbox helpers shared by the node agent e2e files: create/get/wait through the real API
// server, Events, and what is left of a sandbox on the host (QEMU processes, files, mounts).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { CoreV1Api, CustomObjectsApi, Watch, type KubeConfig } from '@kubernetes/client-node';
import type { KataSandbox } from '../../src/crds/index.js';
import { readProcStat } from '../../src/node-agent/hypervisor/qemu-process.js';
import { mountsUnder, readMountInfo } from '../../src/node-agent/storage/mountinfo.js';

const GROUP = { group: 'kata.sandbox.io', version: 'v1alpha1', plural: 'katasandboxes' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SandboxApi {
  private readonly api: CustomObjectsApi;
  private readonly core: CoreV1Api;

  constructor(
    private readonly kc: KubeConfig,
    readonly namespace: string,
    private readonly nodeName: string,
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async create(name: string, spec: object): Promise<KataSandbox> {
    return (await this.api.createNamespacedCustomObject({
      ...GROUP,
      namespace: this.namespace,
      body: {
        apiVersion: 'kata.sandbox.io/v1alpha1',
        kind: 'KataSandbox',
        metadata: { name },
        spec: { nodeName: this.nodeName, vm: { memoryMiB: 512, accelerator: 'auto' }, ...spec },
      },
    })) as KataSandbox;
  }

  /**
   * Every reason `container` showed in the sandbox's status, from each write after
   * `fromVersion` (a watch sees every one, however briefly it lasted), until `done` holds.
   */
  async reasonsSeen(
    name: string,
    container: string,
    fromVersion: string,
    done: (seen: Set<string>, sb: KataSandbox) => boolean,
    timeoutMs = 180_000,
  ): Promise<{ seen: Set<string>; last: KataSandbox | undefined }> {
    const seen = new Set<string>();
    let last: KataSandbox | undefined;
    let settled = false;
    let stop: AbortController | undefined;
    return new Promise((resolve, reject) => {
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stop?.abort();
        if (err) reject(err);
        else resolve({ seen, last });
      };
      const timer = setTimeout(
        () => finish(new Error(`${name}: saw ${[...seen].join(', ')} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const path = `/apis/${GROUP.group}/${GROUP.version}/namespaces/${this.namespace}/${GROUP.plural}`;
      new Watch(this.kc)
        .watch(
          path,
          { fieldSelector: `metadata.name=${name}`, resourceVersion: fromVersion },
          (_type: string, obj: KataSandbox) => {
            last = obj;
            const c = obj.status?.containers?.find((x) => x.name === container);
            if (c?.reason) seen.add(c.reason);
            if (done(seen, obj)) finish();
            else if (obj.status?.phase === 'Failed') {
              finish(new Error(`${name} failed: ${JSON.stringify(obj.status)}; saw ${[...seen]}`));
            }
          },
          (err: unknown) => finish(err ? (err as Error) : new Error(`${name}: the watch ended`)),
        )
        .then(
          (ac) => {
            stop = ac;
            if (settled) ac.abort();
          },
          (err: unknown) => finish(err as Error),
        );
    });
  }

  async get(name: string): Promise<KataSandbox | undefined> {
    try {
      return (await this.api.getNamespacedCustomObject({
        ...GROUP,
        namespace: this.namespace,
        name,
      })) as KataSandbox;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  async delete(name: string): Promise<void> {
    await this.api.deleteNamespacedCustomObject({ ...GROUP, namespace: this.namespace, name });
  }

  async waitFor(
    name: string,
    what: string,
    pred: (sb: KataSandbox | undefined) => boolean,
    timeoutMs = 240_000,
  ): Promise<KataSandbox | undefined> {
    const deadline = Date.now() + timeoutMs;
    let last: KataSandbox | undefined;
    while (Date.now() < deadline) {
      last = await this.get(name);
      if (pred(last)) return last;
      // An ended sandbox does not come back: say so now rather than at the deadline (unless it
      // is being deleted, which is what a wait for its deletion waits for).
      const ended = last?.status?.phase === 'Failed' || last?.status?.phase === 'Succeeded';
      if (ended && !last?.metadata.deletionTimestamp) break;
      await sleep(500);
    }
    throw new Error(
      `${name}: not ${what} (within ${timeoutMs} ms); last status: ${JSON.stringify(last?.status, null, 1)}`,
    );
  }

  /** How many `reason` Events the sandbox has (the node agent records Ready once per sandbox). */
  async eventCount(name: string, reason: string): Promise<number> {
    const list = await this.core.listNamespacedEvent({
      namespace: this.namespace,
      fieldSelector: `involvedObject.name=${name},reason=${reason}`,
    });
    return list.items.reduce((n, e) => n + (e.count ?? 1), 0);
  }

  async waitForEvent(name: string, reason: string, timeoutMs = 240_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.eventCount(name, reason)) === 0) {
      if (Date.now() > deadline) {
        throw new Error(`${name}: no ${reason} Event within ${timeoutMs} ms`);
      }
      await sleep(500);
    }
  }
}

export const phase = (p: string) => (sb: KataSandbox | undefined) => sb?.status?.phase === p;

/** Live (not zombie) QEMU processes whose command line names the sandbox uid. */
export function qemuPidsOf(uid: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (
        cmd.includes('qemu-system') &&
        cmd.includes(uid) &&
        readProcStat(Number(p))?.state !== 'Z'
      )
        out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

export async function waitForFile(
  file: string,
  pattern: RegExp,
  timeoutMs = 60_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (pattern.test(text)) return text;
    await sleep(300);
  }
  throw new Error(`${file}: no ${pattern} within ${timeoutMs} ms; it has: ${text}`);
}

/** After a test file: kills every process naming `base`, unmounts what is under it, removes it. */
export async function removeScratch(base: string): Promise<void> {
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(base)) process.kill(Number(p), 9);
    } catch {
      // gone
    }
  }
  await sleep(500);
  for (const m of mountsUnder(await readMountInfo(), base).reverse()) {
    try {
      execFileSync('umount', ['-l', m.mountPoint]);
    } catch {
      // already gone
    }
  }
  if (mountsUnder(await readMountInfo(), base).length === 0) {
    rmSync(base, { recursive: true, force: true });
  }
}

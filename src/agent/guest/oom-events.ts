// GetOOMEvent (Kata 1.x): the id of a container in which the kernel's OOM killer killed a
// process, each kill answered once, in order. 1.x registered libcontainer's cgroup v1 OOM
// notification at each container's start; our guest has cgroup v2, which counts the kills in the
// container's memory.events (`oom_kill`). crun gives every container a fresh cgroup, so every
// kill it counts belongs to the container; the watcher learns a container's cgroup at its start
// and keeps reading it after its init died (an init killed for memory is the usual case), until
// the cgroup is gone.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The `oom_kill` count of a memory.events file (0 when absent). Pure. */
export function oomKills(memoryEvents: string): number {
  const m = /^oom_kill (\d+)$/m.exec(memoryEvents);
  return m ? Number(m[1]) : 0;
}

export interface OomEventsOptions {
  /** The ids of the sandbox's containers. */
  ids: () => string[];
  /** A container's cgroup directory while its init runs. */
  cgroupDir: (id: string) => Promise<string | undefined>;
  /** How often memory.events is read while a caller waits (default 500 ms). */
  intervalMs?: number;
}

export class OomEvents {
  private readonly dirs = new Map<string, string>();
  private readonly counted = new Map<string, number>();
  private readonly pending: string[] = [];
  private polling: Promise<void> | undefined;

  constructor(private readonly opts: OomEventsOptions) {}

  /** Remembers a container's cgroup (at its start), so a kill of its init is still seen. */
  async track(id: string): Promise<void> {
    const dir = await this.opts.cgroupDir(id).catch(() => undefined);
    if (dir !== undefined) this.dirs.set(id, dir);
  }

  /** The next kill's container id; waits for one, reading memory.events, until `signal` aborts. */
  async next(signal: AbortSignal): Promise<string> {
    for (;;) {
      signal.throwIfAborted();
      const id = this.pending.shift();
      if (id !== undefined) return id;
      await this.poll();
      if (this.pending.length > 0) continue;
      await sleep(this.opts.intervalMs ?? 500, undefined, { signal });
    }
  }

  /** One reading of every known cgroup; concurrent callers share it. */
  poll(): Promise<void> {
    this.polling ??= this.read().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async read(): Promise<void> {
    for (const id of this.opts.ids()) {
      if (!this.dirs.has(id)) await this.track(id);
    }
    for (const [id, dir] of [...this.dirs]) {
      const text = await readFile(path.join(dir, 'memory.events'), 'utf8').catch(() => undefined);
      if (text === undefined) {
        // The cgroup is gone (the container was removed).
        this.dirs.delete(id);
        this.counted.delete(dir);
        continue;
      }
      const kills = oomKills(text);
      // Fewer than counted: a new cgroup at the same path (the container was made again).
      const counted = this.counted.get(dir) ?? 0;
      const before = kills < counted ? 0 : counted;
      for (let k = before; k < kills; k++) this.pending.push(id);
      this.counted.set(dir, kills);
    }
  }
}

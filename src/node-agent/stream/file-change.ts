// Wakes a log follower as soon as the file it reads is written (inotify, through fs.watch)
// instead of at its next poll: the poll alone put its whole interval into every followed line's
// latency (200 ms p50 measured by bench/kata-api-exec.ts). The poll stays as the fallback for
// what a watch misses (a file not created yet, a watch that failed); after a rotation the reader
// re-arms the watch on the new file.
import { watch, type FSWatcher } from 'node:fs';

export class FileChange {
  private watcher?: FSWatcher;
  private changed = false;
  private wake?: () => void;

  constructor(private readonly file: string) {}

  /** Watches the file now under the name (again, after a rotation); no file: polling only. */
  arm(): void {
    this.close();
    try {
      const w = watch(this.file, { persistent: false }, () => {
        this.changed = true;
        this.wake?.();
      });
      w.on('error', () => this.close());
      this.watcher = w;
    } catch {
      // Not there yet (or not watchable): the caller's poll finds it.
    }
  }

  /** Resolves at the first change since the last wait, after `ms`, or when `signal` aborts. */
  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (!this.changed && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, ms);
        this.wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
    }
    this.changed = false;
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}

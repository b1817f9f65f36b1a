// The output of a container's current run as it is pumped to its log, offered to whoever is
// attached (kubectl kata attach). A listener gets each chunk in order and the pump waits for it,
// so an attached client is never buffered for; a listener that cannot keep up drops itself (its
// own timeout), so no client can stall the container's output for long.
export type OutputStream = 'stdout' | 'stderr';

export interface OutputListener {
  data(stream: OutputStream, chunk: Buffer): Promise<void>;
  /** The run's output ended (the container exited, or the watch stopped). */
  end(): void;
}

export class OutputTap {
  private readonly listeners = new Set<OutputListener>();

  subscribe(l: OutputListener): () => void {
    this.listeners.add(l);
    return () => {
      this.listeners.delete(l);
    };
  }

  get listening(): number {
    return this.listeners.size;
  }

  async publish(stream: OutputStream, chunk: Buffer): Promise<void> {
    if (this.listeners.size === 0) return;
    await Promise.all([...this.listeners].map((l) => l.data(stream, chunk).catch(() => {})));
  }

  /** The run's output is over: every listener is told and let go. */
  end(): void {
    const ls = [...this.listeners];
    this.listeners.clear();
    for (const l of ls) l.end();
  }
}

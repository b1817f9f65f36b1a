// Decides whether an Event is new or a repeat of one recorded recently (client-go's correlator,
// simplified): identical events within a window become one Event with a growing series count.

export interface EventFields {
  regarding: { kind?: string; namespace?: string; name?: string; uid?: string };
  type: 'Normal' | 'Warning';
  reason: string;
  action: string;
  note: string;
}

/** Identity of "the same event": same object, type, reason, action and note. */
export function eventKey(e: EventFields): string {
  const r = e.regarding;
  return [r.kind, r.namespace, r.name, r.uid, e.type, e.reason, e.action, e.note].join('\u0000');
}

export interface SeriesEntry {
  /** Name of the Event object written for the first occurrence (set once created). */
  eventName?: string;
  namespace: string;
  count: number;
  firstSeen: number;
  lastSeen: number;
}

export type Correlation =
  { kind: 'new'; entry: SeriesEntry } | { kind: 'repeat'; entry: SeriesEntry };

export class EventCorrelator {
  private readonly entries = new Map<string, SeriesEntry>();

  constructor(
    /** A repeat after this long since the last occurrence starts a new Event. */
    private readonly windowMs = 10 * 60_000,
    /** Entries kept at most; the oldest are dropped first. */
    private readonly maxEntries = 4096,
  ) {}

  observe(key: string, namespace: string, now: number): Correlation {
    const prev = this.entries.get(key);
    if (prev && now - prev.lastSeen <= this.windowMs) {
      prev.count++;
      prev.lastSeen = now;
      // Map order is insertion order: move to the end so eviction drops the least recent.
      this.entries.delete(key);
      this.entries.set(key, prev);
      return { kind: 'repeat', entry: prev };
    }
    const entry: SeriesEntry = { namespace, count: 1, firstSeen: now, lastSeen: now };
    this.entries.delete(key);
    this.entries.set(key, entry);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    return { kind: 'new', entry };
  }

  get size(): number {
    return this.entries.size;
  }
}

/** Notes are bounded by the API (1 KiB); cut on a character boundary. */
export function truncateNote(note: string, maxBytes = 1024): string {
  if (Buffer.byteLength(note) <= maxBytes) return note;
  let out = note;
  while (Buffer.byteLength(out) > maxBytes - 3) out = out.slice(0, -1);
  return out + '...';
}

/** client-go's event name: "<object name>.<time in ns as hex>", unique enough per object. */
export function eventName(objectName: string, nowMs: number, seq = 0): string {
  const ns = BigInt(nowMs) * 1_000_000n + BigInt(seq);
  return `${objectName}.${ns.toString(16)}`;
}

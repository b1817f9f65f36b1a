// Which cached images to evict when the cache is over its size limit: only images no sandbox
// holds, least recently used first, and only as many as it takes. Pure.

export interface CachedImageUsage {
  digest: string;
  bytes: number;
  /** Last acquire, release or pull (ms since the epoch). */
  lastUsedMs: number;
  /** A sandbox holds a lease on it (or a pull is handing it out right now). */
  inUse: boolean;
}

export function chooseEvictions(images: readonly CachedImageUsage[], maxBytes: number): string[] {
  let total = images.reduce((sum, i) => sum + i.bytes, 0);
  if (total <= maxBytes) return [];
  const candidates = images
    .filter((i) => !i.inUse)
    .sort((a, b) => a.lastUsedMs - b.lastUsedMs || a.digest.localeCompare(b.digest));
  const out: string[] = [];
  for (const c of candidates) {
    if (total <= maxBytes) break;
    out.push(c.digest);
    total -= c.bytes;
  }
  return out;
}

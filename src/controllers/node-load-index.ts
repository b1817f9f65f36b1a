// What each node holds, kept up to date from sandbox informer events and this process's own
// binds, so a reconcile reads a node's load in O(1) instead of scanning every sandbox.
import { hasEnded, NODE_LABEL, vmMemoryMiB, type KataSandbox } from '../crds/index.js';
import type { NodeLoad } from './node-candidates.js';

export interface Placement {
  node: string;
  memoryMiB: number;
}

/** The capacity a sandbox holds: on its bound node until it has ended. Pure. */
export function placementOf(sb: KataSandbox): Placement | undefined {
  const node = sb.metadata.labels?.[NODE_LABEL];
  if (!node || hasEnded(sb.status?.phase)) return undefined;
  return { node, memoryMiB: vmMemoryMiB(sb.spec) };
}

export class NodeLoadIndex {
  /** Per sandbox key: what the cache shows it holding. */
  private readonly placed = new Map<string, Placement>();
  /** Per sandbox key: bindings this process made that the cache has not shown yet. */
  private readonly reserved = new Map<string, Placement>();
  private readonly loads = new Map<string, NodeLoad>();

  /** The cache's view of one sandbox changed; undefined when it was deleted. */
  set(key: string, sb: KataSandbox | undefined): void {
    this.move(this.placed, key, sb && placementOf(sb));
    // Once the cache shows the binding (or the object is gone) the reservation has served.
    if (!sb || sb.metadata.labels?.[NODE_LABEL]) this.move(this.reserved, key, undefined);
  }

  /** A binding sent and not yet seen: it counts on the node from now on, so none overbooks. */
  reserve(key: string, p: Placement): void {
    this.move(this.reserved, key, p);
  }

  release(key: string): void {
    this.move(this.reserved, key, undefined);
  }

  loadOf(node: string): NodeLoad {
    const l = this.loads.get(node);
    return { sandboxes: l?.sandboxes ?? 0, memoryMiB: l?.memoryMiB ?? 0 };
  }

  private move(map: Map<string, Placement>, key: string, next: Placement | undefined): void {
    const prev = map.get(key);
    if (prev) this.add(prev, -1);
    if (next) {
      map.set(key, next);
      this.add(next, 1);
    } else {
      map.delete(key);
    }
  }

  private add(p: Placement, sign: 1 | -1): void {
    const l = this.loads.get(p.node) ?? { sandboxes: 0, memoryMiB: 0 };
    l.sandboxes += sign;
    l.memoryMiB += sign * p.memoryMiB;
    if (l.sandboxes === 0 && l.memoryMiB === 0) this.loads.delete(p.node);
    else this.loads.set(p.node, l);
  }
}

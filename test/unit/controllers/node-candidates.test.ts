import { describe, expect, it } from '@jest/globals';
import {
  chooseNode,
  nodeLeaseIsFresh,
  type NodeView,
} from '../../../src/controllers/node-candidates.js';

const now = new Date('2026-11-28T12:00:00Z');
const fresh = (over: Partial<NonNullable<NodeView['lease']>> = {}): NodeView['lease'] => ({
  renewTime: new Date(now.getTime() - 5_000),
  leaseDurationSeconds: 40,
  capacitySandboxes: 10,
  capacityMemoryMiB: 8192,
  ...over,
});
const noLoad = () => ({ sandboxes: 0, memoryMiB: 0 });

describe('nodeLeaseIsFresh', () => {
  it('is fresh until renewTime + duration', () => {
    expect(nodeLeaseIsFresh(fresh(), now)).toBe(true);
    expect(nodeLeaseIsFresh(fresh({ renewTime: new Date(now.getTime() - 40_000) }), now)).toBe(
      false,
    );
    expect(nodeLeaseIsFresh(fresh({ renewTime: undefined }), now)).toBe(false);
    expect(nodeLeaseIsFresh(undefined, now)).toBe(false);
  });
});

describe('chooseNode', () => {
  it('prefers a node with a ready warm VM of the shape over a less loaded one', () => {
    const load: Record<string, { sandboxes: number; memoryMiB: number }> = {
      a: { sandboxes: 3, memoryMiB: 1536 },
      b: { sandboxes: 0, memoryMiB: 0 },
    };
    const nodes = [
      { name: 'a', lease: fresh({ warmReady: { '1c512m-default-auto': 1 } }) },
      { name: 'b', lease: fresh({ warmReady: { '2c1024m-default-auto': 3 } }) },
    ];
    const req = { memoryMiB: 512, warmShape: '1c512m-default-auto' };
    expect(chooseNode(req, nodes, (n) => load[n]!, now)).toEqual({ node: 'a' });
    // Another shape: the warm VMs do not count, the least loaded wins.
    const other = { memoryMiB: 512, warmShape: '1c768m-default-auto' };
    expect(chooseNode(other, nodes, (n) => load[n]!, now)).toEqual({ node: 'b' });
    // A warm node that cannot fit the sandbox is still refused.
    const full = [
      {
        name: 'a',
        lease: fresh({ capacitySandboxes: 3, warmReady: { '1c512m-default-auto': 1 } }),
      },
    ];
    expect(chooseNode(req, full, (n) => load[n]!, now)).toEqual({
      unschedulable: '0/1 nodes are available: 1 sandbox capacity full',
    });
  });

  it('picks the least loaded node', () => {
    const load: Record<string, { sandboxes: number; memoryMiB: number }> = {
      a: { sandboxes: 3, memoryMiB: 1536 },
      b: { sandboxes: 1, memoryMiB: 512 },
    };
    const nodes = [
      { name: 'a', lease: fresh() },
      { name: 'b', lease: fresh() },
    ];
    expect(chooseNode({ memoryMiB: 512 }, nodes, (n) => load[n]!, now)).toEqual({ node: 'b' });
  });

  it('breaks ties by free memory, then by name', () => {
    const nodes = [
      { name: 'b', lease: fresh() },
      { name: 'a', lease: fresh() },
      { name: 'c', lease: fresh({ capacityMemoryMiB: 16384 }) },
    ];
    expect(chooseNode({ memoryMiB: 512 }, nodes, noLoad, now)).toEqual({ node: 'c' });
    expect(chooseNode({ memoryMiB: 512 }, nodes.slice(0, 2), noLoad, now)).toEqual({ node: 'a' });
  });

  it('skips expired leases, cordoned nodes and full nodes, saying why', () => {
    const nodes: NodeView[] = [
      { name: 'old', lease: fresh({ renewTime: new Date(now.getTime() - 60_000) }) },
      { name: 'cordoned', lease: fresh(), node: { labels: {}, unschedulable: true } },
      { name: 'full', lease: fresh({ capacitySandboxes: 2 }) },
      { name: 'small', lease: fresh({ capacityMemoryMiB: 256 }) },
    ];
    const loadOf = (n: string) =>
      n === 'full' ? { sandboxes: 2, memoryMiB: 0 } : { sandboxes: 0, memoryMiB: 0 };
    expect(chooseNode({ memoryMiB: 512 }, nodes, loadOf, now)).toEqual({
      unschedulable:
        '0/4 nodes are available: 1 cordoned, 1 insufficient memory, 1 lease expired, 1 sandbox capacity full',
    });
  });

  it('matches nodeSelector against Node labels only', () => {
    const nodes: NodeView[] = [
      { name: 'a', lease: fresh(), node: { labels: { disk: 'ssd' }, unschedulable: false } },
      { name: 'b', lease: fresh(), node: { labels: { disk: 'hdd' }, unschedulable: false } },
      { name: 'c', lease: fresh() },
    ];
    expect(chooseNode({ memoryMiB: 1, nodeSelector: { disk: 'hdd' } }, nodes, noLoad, now)).toEqual(
      { node: 'b' },
    );
    expect(
      chooseNode({ memoryMiB: 1, nodeSelector: { disk: 'nvme' } }, nodes, noLoad, now),
    ).toEqual({
      unschedulable: '0/3 nodes are available: 1 no Node object, 2 nodeSelector mismatch',
    });
  });

  it('honours a nodeName pin, and says so when that node has no agent', () => {
    const nodes = [
      { name: 'a', lease: fresh() },
      { name: 'b', lease: fresh() },
    ];
    const loadOf = (n: string) => ({ sandboxes: n === 'b' ? 5 : 0, memoryMiB: 0 });
    expect(chooseNode({ memoryMiB: 1, nodeName: 'b' }, nodes, loadOf, now)).toEqual({ node: 'b' });
    expect(chooseNode({ memoryMiB: 1, nodeName: 'z' }, nodes, loadOf, now)).toEqual({
      unschedulable: 'node "z" (spec.nodeName) has no node agent',
    });
  });

  it("for a pinned sandbox, counts other nodes as mismatches, whatever their state, and names the pinned node's trouble", () => {
    const nodes: NodeView[] = [
      { name: 'pinned', lease: fresh({ renewTime: new Date(now.getTime() - 60_000) }) },
      { name: 'other-old', lease: fresh({ renewTime: new Date(now.getTime() - 60_000) }) },
      { name: 'other', lease: fresh() },
    ];
    expect(chooseNode({ memoryMiB: 1, nodeName: 'pinned' }, nodes, noLoad, now)).toEqual({
      unschedulable: '0/3 nodes are available: 1 lease expired, 2 nodeName mismatch',
    });
  });

  it('reports no nodes at all', () => {
    expect(chooseNode({ memoryMiB: 1 }, [], noLoad, now)).toEqual({
      unschedulable: '0/0 nodes are available',
    });
  });
});

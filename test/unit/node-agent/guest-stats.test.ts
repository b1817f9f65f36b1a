// The node agent's guest sampling against a fake agent client: what each answer becomes, and that
// a call that fails (a guest that does not answer in time) only leaves its part out.
import { describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import { AgentRpcError } from '../../../src/agent/errors.js';
import type { StatsContainerResponse } from '../../../src/generated/agent.js';
import {
  containerSample,
  interfaceSamples,
  sampleGuest,
  type GuestStatsClient,
} from '../../../src/node-agent/runtime/guest-stats.js';

const net = (name: string, rx: number, tx: number) => ({
  name,
  rxBytes: rx,
  rxPackets: 0,
  rxErrors: 0,
  rxDropped: 0,
  txBytes: tx,
  txPackets: 0,
  txErrors: 0,
  txDropped: 0,
});

function stats(
  cpuNs: number,
  usage: number,
  memStats: Record<string, number>,
): StatsContainerResponse {
  return {
    cgroupStats: {
      cpuStats: {
        cpuUsage: { totalUsage: cpuNs, percpuUsage: [], usageInKernelmode: 0, usageInUsermode: 0 },
      },
      memoryStats: {
        cache: 0,
        usage: { usage, maxUsage: 0, failcnt: 0, limit: 0 },
        useHierarchy: true,
        stats: memStats,
      },
      hugetlbStats: {},
    },
    networkStats: [net('lo', 100, 100), net('eth0', 2000, 1000), net('evil0', 1, 1)],
  };
}

describe('containerSample', () => {
  it('CPU in seconds; working set is usage less inactive file pages (v2 or v1 name), never negative', () => {
    expect(containerSample('a', stats(1_500_000_000, 4096, { inactive_file: 1024 }))).toEqual({
      name: 'a',
      cpuSeconds: 1.5,
      memoryUsageBytes: 4096,
      memoryWorkingSetBytes: 3072,
    });
    expect(
      containerSample('a', stats(0, 4096, { total_inactive_file: 96 })).memoryWorkingSetBytes,
    ).toBe(4000);
    expect(containerSample('a', stats(0, 10, { inactive_file: 50 })).memoryWorkingSetBytes).toBe(0);
    expect(containerSample('a', { networkStats: [] })).toEqual({
      name: 'a',
      cpuSeconds: 0,
      memoryUsageBytes: 0,
      memoryWorkingSetBytes: 0,
    });
  });
});

describe('interfaceSamples', () => {
  it('keeps only interfaces the node agent knows, so the guest cannot add series', () => {
    expect(interfaceSamples(stats(0, 0, {}).networkStats, new Set(['lo', 'eth0']))).toEqual([
      { name: 'lo', receiveBytes: 100, transmitBytes: 100 },
      { name: 'eth0', receiveBytes: 2000, transmitBytes: 1000 },
    ]);
  });
});

describe('sampleGuest', () => {
  const calls: string[] = [];
  const client = (failing: Set<string>): GuestStatsClient => ({
    guestDetails: async (opts) => {
      calls.push(`guestDetails ${opts?.timeoutMs}`);
      if (failing.has('details'))
        throw new AgentRpcError('GetGuestDetails', status.DEADLINE_EXCEEDED, 'deadline');
      return {
        memBlockSizeBytes: 0,
        supportMemHotplugProbe: false,
        guestMemory: { totalBytes: 1e9, availableBytes: 6e8 },
      };
    },
    statsContainer: async (id, opts) => {
      calls.push(`statsContainer ${id} ${opts?.timeoutMs}`);
      if (failing.has(id))
        throw new AgentRpcError('StatsContainer', status.DEADLINE_EXCEEDED, 'deadline');
      return stats(id === 'a' ? 3e9 : 1e9, 100, {});
    },
  });
  const known = new Set(['lo', 'eth0']);

  it('asks for the guest memory and each container, every call with the deadline given', async () => {
    calls.length = 0;
    const s = await sampleGuest(client(new Set()), ['a', 'b'], known, { timeoutMs: 5000 });
    expect(calls.sort()).toEqual([
      'guestDetails 5000',
      'statsContainer a 5000',
      'statsContainer b 5000',
    ]);
    expect(s.memory).toEqual({ totalBytes: 1e9, availableBytes: 6e8 });
    expect(s.containers.map((c) => [c.name, c.cpuSeconds])).toEqual([
      ['a', 3],
      ['b', 1],
    ]);
    expect(s.interfaces.map((i) => i.name)).toEqual(['lo', 'eth0']);
  });

  it('a call that fails leaves only its part out; nothing answering gives an empty sample', async () => {
    const partial = await sampleGuest(client(new Set(['a'])), ['a', 'b'], known, { timeoutMs: 10 });
    expect(partial.containers.map((c) => c.name)).toEqual(['b']);
    expect(partial.interfaces).toHaveLength(2);
    expect(partial.memory).toBeDefined();
    const none = await sampleGuest(client(new Set(['details', 'a'])), ['a'], known, {
      timeoutMs: 10,
    });
    expect(none).toEqual({ containers: [], interfaces: [] });
  });

  it('an agent without our memory extension (a Kata 1.x agent) gives no memory, the rest as usual', async () => {
    const oneX: GuestStatsClient = {
      guestDetails: async () => ({ memBlockSizeBytes: 0, supportMemHotplugProbe: false }),
      statsContainer: async () => stats(1e9, 1, {}),
    };
    const s = await sampleGuest(oneX, ['a'], known, { timeoutMs: 10 });
    expect(s.memory).toBeUndefined();
    expect(s.containers).toHaveLength(1);
  });
});

// One sample of what the guest says about itself: its memory (GetGuestDetails' extension field),
// each running container's cgroup (StatsContainer) and the guest's interface counters. Taken on an
// interval by the node agent, never on a scrape; every call has a short deadline, and a call that
// fails leaves its part out, so an agent that does not answer simply yields no series.
import type { AgentClient } from '../../agent/agent-client.js';
import type { NetworkStats, StatsContainerResponse } from '../../generated/agent.js';

export interface ContainerSample {
  name: string;
  cpuSeconds: number;
  memoryUsageBytes: number;
  /** Usage less inactive file pages: what the kernel cannot reclaim easily (cAdvisor's). */
  memoryWorkingSetBytes: number;
}

export interface InterfaceSample {
  name: string;
  receiveBytes: number;
  transmitBytes: number;
}

export interface GuestSample {
  memory?: { totalBytes: number; availableBytes: number };
  containers: ContainerSample[];
  interfaces: InterfaceSample[];
}

export type GuestStatsClient = Pick<AgentClient, 'guestDetails' | 'statsContainer'>;

/** A container's figures from its StatsContainer answer. Pure. */
export function containerSample(name: string, res: StatsContainerResponse): ContainerSample {
  const cpuNs = res.cgroupStats?.cpuStats?.cpuUsage?.totalUsage ?? 0;
  const mem = res.cgroupStats?.memoryStats;
  const usage = mem?.usage?.usage ?? 0;
  // cgroup v2 names it inactive_file, v1 (a 1.x agent's) total_inactive_file.
  const inactive = mem?.stats['inactive_file'] ?? mem?.stats['total_inactive_file'] ?? 0;
  return {
    name,
    cpuSeconds: cpuNs / 1e9,
    memoryUsageBytes: usage,
    memoryWorkingSetBytes: Math.max(0, usage - inactive),
  };
}

/**
 * The guest's interfaces, only those the node agent knows of (loopback and the ones it configured):
 * the guest names them, and a series per name it invents would be unbounded. Pure.
 */
export function interfaceSamples(
  stats: readonly NetworkStats[],
  known: ReadonlySet<string>,
): InterfaceSample[] {
  return stats
    .filter((s) => known.has(s.name))
    .map((s) => ({ name: s.name, receiveBytes: s.rxBytes, transmitBytes: s.txBytes }));
}

/** Asks the guest, all calls at once, each bounded by `timeoutMs`; what fails is left out. */
export async function sampleGuest(
  client: GuestStatsClient,
  containers: readonly string[],
  knownInterfaces: ReadonlySet<string>,
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<GuestSample> {
  const call = { timeoutMs: opts.timeoutMs, ...(opts.signal && { signal: opts.signal }) };
  const [details, ...stats] = await Promise.allSettled([
    client.guestDetails(call),
    ...containers.map((name) => client.statsContainer(name, call)),
  ]);
  const sample: GuestSample = { containers: [], interfaces: [] };
  const memory = details?.status === 'fulfilled' ? details.value.guestMemory : undefined;
  if (memory) sample.memory = { ...memory };
  stats.forEach((r, i) => {
    if (r.status !== 'fulfilled') return;
    sample.containers.push(containerSample(containers[i]!, r.value));
    // Every container sees the same guest interfaces: the first answer gives them.
    if (sample.interfaces.length === 0) {
      sample.interfaces = interfaceSamples(r.value.networkStats, knownInterfaces);
    }
  });
  return sample;
}

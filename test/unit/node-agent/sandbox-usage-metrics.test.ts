// Per-sandbox and capacity series of the node agent: read from /proc for a real process, labelled
// by namespace, name and node only, and gone with the sandbox.
import { describe, expect, it } from '@jest/globals';
import type { NodeAllocation } from '../../../src/kube/lease.js';
import {
  nodeAgentMetrics,
  type SandboxUsage,
} from '../../../src/node-agent/metrics/node-agent-metrics.js';
import {
  cpuSecondsOfStat,
  processCpuSeconds,
  processMemoryBytes,
  statusBytes,
} from '../../../src/node-agent/metrics/process-usage.js';

describe('process usage from /proc', () => {
  it('parses utime + stime past a command with spaces and parentheses, and VmRSS', () => {
    const stat = '4242 (qemu (x) 1) S 1 2 3 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 9 0 0';
    expect(cpuSecondsOfStat(stat)).toBe(3.25);
    expect(statusBytes('Name:\tqemu\nVmRSS:\t  2048 kB\nThreads:\t3\n', 'VmRSS')).toBe(2097152);
    expect(statusBytes('Name:\tzombie\n', 'VmRSS')).toBeUndefined();
  });

  it('reads this very process, and nothing for a pid that does not exist', () => {
    expect(processMemoryBytes(process.pid)).toBeGreaterThan(1024 * 1024);
    expect(processMemoryBytes(process.pid, 'VmHWM')).toBeGreaterThan(1024 * 1024);
    expect(processCpuSeconds(process.pid)).toBeGreaterThanOrEqual(0);
    expect(processCpuSeconds(2 ** 22 + 7)).toBeUndefined();
    expect(processMemoryBytes(2 ** 22 + 7)).toBeUndefined();
  });
});

describe('per-sandbox series', () => {
  it('one series per sandbox and node, removed with the sandbox; capacity and allocation', async () => {
    let usage: SandboxUsage[] = [
      {
        namespace: 'a',
        name: 'web',
        qemuPid: 4242,
        restarts: 2,
      },
      { namespace: 'b', name: 'job', restarts: 0 },
    ];
    let allocated: NodeAllocation = { sandboxes: 2, memoryMiB: 1024, vcpus: 3 };
    const m = nodeAgentMetrics({
      phases: () => new Map(),
      runningQemu: () => 1,
      node: 'n1',
      sandboxUsage: () => usage,
      capacity: { sandboxes: 16, memoryMiB: 8192 },
      allocated: () => allocated,
      // QEMU 4242 as /proc would show it.
      proc: {
        cpuSeconds: (pid) => (pid === 4242 ? 12.5 : undefined),
        residentBytes: (pid) => (pid === 4242 ? 300e6 : undefined),
      },
    });
    const text = await m.registry.metrics();
    expect(text).toContain(
      'kata_node_sandbox_qemu_cpu_seconds_total{namespace="a",name="web",node="n1"} 12.5',
    );
    expect(text).toContain(
      'kata_node_sandbox_qemu_resident_memory_bytes{namespace="a",name="web",node="n1"} 300000000',
    );
    expect(text).toContain(
      'kata_node_sandbox_container_restarts{namespace="b",name="job",node="n1"} 0',
    );
    // No QEMU (not booted yet): no CPU or memory series for it.
    expect(text).not.toMatch(/qemu_cpu_seconds_total\{namespace="b"/);
    expect(text).toContain('kata_node_capacity{resource="memory_mib"} 8192');
    expect(text).toContain('kata_node_allocated{resource="sandboxes"} 2');
    expect(text).toContain('kata_node_allocated{resource="vcpus"} 3');
    expect(text).not.toContain('kata_node_capacity{resource="vcpus"}');

    // The guest's sample (taken on an interval): per container and per interface series.
    usage = [
      {
        namespace: 'a',
        name: 'web',
        restarts: 0,
        guest: {
          memory: { totalBytes: 1e9, availableBytes: 6e8 },
          containers: [
            { name: 'main', cpuSeconds: 2.5, memoryUsageBytes: 4096, memoryWorkingSetBytes: 3072 },
          ],
          interfaces: [{ name: 'eth0', receiveBytes: 2000, transmitBytes: 1000 }],
        },
      },
      { namespace: 'b', name: 'job', restarts: 0 },
    ];
    const guest = await m.registry.metrics();
    const web = 'namespace="a",name="web",node="n1"';
    for (const line of [
      `kata_node_sandbox_guest_memory_total_bytes{${web}} 1000000000`,
      `kata_node_sandbox_guest_memory_available_bytes{${web}} 600000000`,
      `kata_node_sandbox_container_cpu_seconds_total{${web},container="main"} 2.5`,
      `kata_node_sandbox_container_memory_usage_bytes{${web},container="main"} 4096`,
      `kata_node_sandbox_container_memory_working_set_bytes{${web},container="main"} 3072`,
      `kata_node_sandbox_network_receive_bytes_total{${web},interface="eth0"} 2000`,
      `kata_node_sandbox_network_transmit_bytes_total{${web},interface="eth0"} 1000`,
    ])
      expect(guest).toContain(line);
    // A sandbox without a sample (its agent did not answer) has no guest series.
    expect(guest).not.toMatch(/kata_node_sandbox_(guest|network)_\w+\{namespace="b"/);
    expect(guest).not.toMatch(/kata_node_sandbox_container_(cpu|memory)_\w+\{namespace="b"/);

    usage = [];
    allocated = { sandboxes: 0, memoryMiB: 0, vcpus: 0 };
    const after = await m.registry.metrics();
    expect(after).not.toMatch(/kata_node_sandbox_\w+\{namespace=/);
    expect(after).toContain('kata_node_allocated{resource="memory_mib"} 0');
  });
});

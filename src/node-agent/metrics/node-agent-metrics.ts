import { warmPoolMetrics, type WarmVmCount } from './warm-pool-metrics.js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { NodeAllocation, NodeCapacity } from '../../kube/lease.js';
import { collectProcessMetrics } from '../../observability/process-metrics.js';
import { registerImageMetrics } from '../images/image-metrics.js';
import { processCpuSeconds, processMemoryBytes } from './process-usage.js';
import type { GuestSample } from '../runtime/guest-stats.js';
import {
  failureCause,
  SYSTEM_FAILURE_REASONS,
  USER_FAILURE_REASONS,
} from '../runtime/failure-cause.js';

/** One sandbox of this node as its per-sandbox series see it. */
export interface SandboxUsage {
  namespace: string;
  name: string;
  /** Its QEMU, once started; its CPU and memory are read from /proc at scrape time. */
  qemuPid?: number;
  restarts: number;
  /** The guest's last answer (sampled on an interval, never at scrape time); none when it gave none. */
  guest?: GuestSample;
}

type SandboxLabels = { namespace: string; name: string; node: string };

/** How a process's figures are read (the /proc readers; a unit test passes its own). */
export interface ProcessReader {
  cpuSeconds(pid: number): number | undefined;
  residentBytes(pid: number): number | undefined;
}

const PROC: ProcessReader = {
  cpuSeconds: processCpuSeconds,
  residentBytes: (pid) => processMemoryBytes(pid),
};

/** The node agent's metrics (prefix kata_node_), on their own registry. */
export function nodeAgentMetrics(collect: {
  phases: () => Map<string, number>;
  runningQemu: () => number;
  /** The node's name, a label of the per-sandbox series. */
  node?: string;
  /** This node's sandboxes (bounded by the node's capacity; a series goes with its sandbox). */
  sandboxUsage?: () => SandboxUsage[];
  capacity?: NodeCapacity;
  allocated?: () => NodeAllocation;
  /** The Lease heartbeat: last renewal (epoch ms, 0 before the first) and worker starts. */
  heartbeat?: () => { lastRenewed: number; starts: number };
  proc?: ProcessReader;
  /** The node's warm VMs by pool and state. */
  warmVms?: () => WarmVmCount[];
  /** Streams open on the stream endpoint (followed logs and consoles, exec, attach). */
  openStreams?: () => number;
}) {
  const node = collect.node ?? '';
  const proc = collect.proc ?? PROC;
  const perSandbox = (set: (labels: SandboxLabels, u: SandboxUsage) => void): void => {
    for (const u of collect.sandboxUsage?.() ?? [])
      set({ namespace: u.namespace, name: u.name, node }, u);
  };
  /** A series per sandbox (and per container or interface of its guest sample), made afresh. */
  const guestSeries = <K extends string>(
    kind: 'gauge' | 'counter',
    name: string,
    help: string,
    extra: K[],
    each: (g: GuestSample, emit: (extra: Record<K, string>, value: number) => void) => void,
  ): Gauge | Counter => {
    const labelNames = ['namespace', 'name', 'node', ...extra];
    function collect(this: Gauge | Counter): void {
      this.reset();
      perSandbox((l, u) => {
        if (!u.guest) return;
        each(u.guest, (x, v) => {
          if (this instanceof Gauge) this.set({ ...l, ...x }, v);
          else this.inc({ ...l, ...x }, v);
        });
      });
    }
    const cfg = { name, help, labelNames, registers: [registry], collect };
    return kind === 'gauge' ? new Gauge(cfg) : new Counter(cfg);
  };
  const registry = new Registry();
  collectProcessMetrics(registry, 'kata_node_');
  /** What the node offers or holds, by resource: sandboxes and memory_mib. */
  const resourceGauge = (
    name: string,
    help: string,
    read: () => (NodeCapacity & Partial<NodeAllocation>) | undefined,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['resource'],
      registers: [registry],
      collect() {
        const r = read();
        if (!r) return;
        this.set({ resource: 'sandboxes' }, r.sandboxes);
        this.set({ resource: 'memory_mib' }, r.memoryMiB);
        if (r.vcpus !== undefined) this.set({ resource: 'vcpus' }, r.vcpus);
      },
    });
  const metrics = {
    registry,
    sandboxes: new Gauge({
      name: 'kata_node_sandboxes',
      help: 'KataSandboxes on this node by phase.',
      labelNames: ['phase'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [phase, n] of collect.phases()) this.set({ phase }, n);
      },
    }),
    openStreams: new Gauge({
      name: 'kata_node_open_streams',
      help: "Streams open on the node agent's stream endpoint (log, console, exec, attach).",
      registers: [registry],
      collect() {
        this.set(collect.openStreams?.() ?? 0);
      },
    }),
    runningQemu: new Gauge({
      name: 'kata_node_qemu_processes',
      help: 'QEMU processes running for sandboxes of this node.',
      registers: [registry],
      collect() {
        this.set(collect.runningQemu());
      },
    }),
    bootSeconds: new Histogram({
      name: 'kata_node_vm_boot_duration_seconds',
      help: 'QEMU start until the guest agent answers.',
      labelNames: ['accelerator'],
      buckets: [0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180],
      registers: [registry],
    }),
    createToRunningSeconds: new Histogram({
      name: 'kata_node_create_to_running_seconds',
      help: 'Sandbox creation (metadata.creationTimestamp) until every container runs.',
      buckets: [1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300],
      registers: [registry],
    }),
    agentRpcSeconds: new Histogram({
      name: 'kata_node_agent_rpc_duration_seconds',
      help: 'Guest agent RPCs by method and gRPC status code.',
      labelNames: ['method', 'code'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    failures: new Counter({
      name: 'kata_node_sandbox_failures_total',
      help:
        'Sandbox failures by reason (HostPathNotAllowed, BootFailed, VMExited, ...) and cause ' +
        "(user: the sandbox's spec, image or container; system: the platform).",
      labelNames: ['reason', 'cause'],
      registers: [registry],
    }),
    images: registerImageMetrics(registry),
    sandboxQemuCpu: new Counter({
      name: 'kata_node_sandbox_qemu_cpu_seconds_total',
      help: "CPU seconds (user + system) of each sandbox's QEMU, from /proc.",
      labelNames: ['namespace', 'name', 'node'],
      registers: [registry],
      collect() {
        this.reset();
        perSandbox((l, u) => {
          const cpu = u.qemuPid === undefined ? undefined : proc.cpuSeconds(u.qemuPid);
          if (cpu !== undefined) this.inc(l, cpu);
        });
      },
    }),
    sandboxQemuMemory: new Gauge({
      name: 'kata_node_sandbox_qemu_resident_memory_bytes',
      help: "Resident memory of each sandbox's QEMU (guest memory it touched and its own), from /proc.",
      labelNames: ['namespace', 'name', 'node'],
      registers: [registry],
      collect() {
        this.reset();
        perSandbox((l, u) => {
          const bytes = u.qemuPid === undefined ? undefined : proc.residentBytes(u.qemuPid);
          if (bytes !== undefined) this.set(l, bytes);
        });
      },
    }),
    sandboxRestarts: new Gauge({
      name: 'kata_node_sandbox_container_restarts',
      help: "Restarts of each sandbox's containers, summed.",
      labelNames: ['namespace', 'name', 'node'],
      registers: [registry],
      collect() {
        this.reset();
        perSandbox((l, u) => this.set(l, u.restarts));
      },
    }),
    guestMemoryTotal: guestSeries(
      'gauge',
      'kata_node_sandbox_guest_memory_total_bytes',
      "Memory the guest kernel has (MemTotal), from the guest agent's GetGuestDetails.",
      [],
      (g, emit) => {
        if (g.memory) emit({}, g.memory.totalBytes);
      },
    ),
    guestMemoryAvailable: guestSeries(
      'gauge',
      'kata_node_sandbox_guest_memory_available_bytes',
      'Memory the guest kernel could give without swapping (MemAvailable), from the guest agent.',
      [],
      (g, emit) => {
        if (g.memory) emit({}, g.memory.availableBytes);
      },
    ),
    containerCpu: guestSeries(
      'counter',
      'kata_node_sandbox_container_cpu_seconds_total',
      "CPU seconds of each running container's cgroup in the guest (StatsContainer).",
      ['container'],
      (g, emit) => g.containers.forEach((c) => emit({ container: c.name }, c.cpuSeconds)),
    ),
    containerMemoryUsage: guestSeries(
      'gauge',
      'kata_node_sandbox_container_memory_usage_bytes',
      "Memory charged to each running container's cgroup in the guest, page cache included.",
      ['container'],
      (g, emit) => g.containers.forEach((c) => emit({ container: c.name }, c.memoryUsageBytes)),
    ),
    containerMemoryWorkingSet: guestSeries(
      'gauge',
      'kata_node_sandbox_container_memory_working_set_bytes',
      "Each running container's memory usage less its inactive file pages (cAdvisor's working set).",
      ['container'],
      (g, emit) =>
        g.containers.forEach((c) => emit({ container: c.name }, c.memoryWorkingSetBytes)),
    ),
    networkReceive: guestSeries(
      'counter',
      'kata_node_sandbox_network_receive_bytes_total',
      "Bytes received by each of the guest's interfaces (loopback and those the node agent configured).",
      ['interface'],
      (g, emit) => g.interfaces.forEach((i) => emit({ interface: i.name }, i.receiveBytes)),
    ),
    networkTransmit: guestSeries(
      'counter',
      'kata_node_sandbox_network_transmit_bytes_total',
      "Bytes sent by each of the guest's interfaces (loopback and those the node agent configured).",
      ['interface'],
      (g, emit) => g.interfaces.forEach((i) => emit({ interface: i.name }, i.transmitBytes)),
    ),
    leaseRenewed: new Gauge({
      name: 'kata_node_lease_last_renewal_timestamp_seconds',
      help: "When the node agent's heartbeat last renewed its Lease (0 before the first).",
      registers: [registry],
      collect() {
        const hb = collect.heartbeat?.();
        if (hb) this.set(hb.lastRenewed / 1000);
      },
    }),
    heartbeatStarts: new Counter({
      name: 'kata_node_heartbeat_worker_starts_total',
      help: 'Starts of the Lease heartbeat worker thread: 1, plus one per restart after it died.',
      registers: [registry],
      collect() {
        const hb = collect.heartbeat?.();
        if (!hb) return;
        this.reset();
        this.inc(hb.starts);
      },
    }),
    capacity: resourceGauge(
      'kata_node_capacity',
      'What this node agent offers (advertised on its Lease): resource sandboxes or memory_mib.',
      () => collect.capacity,
    ),
    allocated: resourceGauge(
      'kata_node_allocated',
      "What this node's sandboxes that have not ended hold (also on its Lease): resource sandboxes, memory_mib or vcpus.",
      () => collect.allocated?.(),
    ),
    warm: warmPoolMetrics(registry, () => collect.warmVms?.()),
  };
  // Every known failure series exists at 0 from the start, so increase() sees the first one.
  for (const reason of [...USER_FAILURE_REASONS, ...SYSTEM_FAILURE_REASONS])
    metrics.failures.inc({ reason, cause: failureCause(reason) }, 0);
  return metrics;
}

export type NodeAgentMetrics = ReturnType<typeof nodeAgentMetrics>;

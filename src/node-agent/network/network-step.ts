// The hook the network step plugs into (DESIGN §4 step 3): what it gives the VM, and its
// lifecycle — validate, prepare, restore from the state file, check, health, release.
import type { KataSandboxSpec } from '../../crds/index.js';
import type { NicConfig } from '../hypervisor/qemu-args.js';
import type { GuestNetworkConfig } from './guest-network-config.js';
import type { NetworkHealth } from './tap-health.js';

/**
 * What a network step gives the VM (the netns/tap/tc work of DESIGN §4 step 3). Implemented in
 * src/node-agent/network/; `record` is kept in the state file and handed back to release().
 */
export interface NetworkPlan {
  nics: NicConfig[];
  /** QEMU must be started inside this network namespace. */
  netnsPath?: string;
  /** Interfaces and routes to push into the guest (UpdateInterface, UpdateRoutes). */
  guest: GuestNetworkConfig;
  record: Record<string, unknown>;
}

/** How a running VM takes a tap: made in QEMU's namespace, handed to QEMU by name, then moved. */
export interface TapHotplug {
  qemuNetnsPath: string;
  plug(tap: string, index: number): Promise<void>;
}

export interface NetworkStep {
  /** Refuses a bad network spec before anything is made on the host (throws). */
  validate(spec: KataSandboxSpec): void;
  prepare(ctx: {
    uid: string;
    spec: KataSandboxSpec;
    runDir: string;
    signal: AbortSignal;
    /** The VM already runs (a warm VM) in this namespace: its taps are plugged into it live. */
    hotplug?: TapHotplug;
  }): Promise<NetworkPlan>;
  /** The plan of an already prepared network (a resumed or adopted sandbox), from its record. */
  restore(record: Record<string, unknown>): NetworkPlan | undefined;
  /** Checks a prepared network is still intact (CNI CHECK), on adoption. */
  check(record: Record<string, unknown>, signal: AbortSignal): Promise<void>;
  /** Whether what prepare wired is still on the host (a cheap check, run periodically). */
  health(uid: string, record: Record<string, unknown>, signal: AbortSignal): Promise<NetworkHealth>;
  release(record: Record<string, unknown>): Promise<void>;
}

/** Mode none: nothing to prepare, nothing to release. */
export const NO_NETWORK: NetworkStep = {
  validate: () => {},
  prepare: () =>
    Promise.resolve({ nics: [], guest: { interfaces: [], routes: [], warnings: [] }, record: {} }),
  restore: () => undefined,
  check: () => Promise.resolve(),
  health: () => Promise.resolve({ ok: true }),
  release: () => Promise.resolve(),
};

// What this node agent can run today, and the hooks the network and block steps plug into.
// Network modes cni/netns (src/node-agent/network/) and block rootfs/devices
// (src/node-agent/storage/block*) are refused with reason NotSupported until those land.
import type { KataSandboxSpec } from '../crds/index.js';
import type { NicConfig } from './hypervisor/qemu-args.js';
import type { StepFailure } from './sandbox-status.js';

/** The refusal of a feature this node agent does not run (yet). Pure. */
export function unsupportedFeature(spec: KataSandboxSpec): StepFailure | undefined {
  const mode = spec.network?.mode ?? 'none';
  if (mode !== 'none') {
    return {
      condition: 'NetworkReady',
      reason: 'NotSupported',
      message: `spec.network.mode: ${JSON.stringify(mode)} is not supported by this node agent yet (only "none")`,
    };
  }
  for (const [i, c] of spec.containers.entries()) {
    const field = `spec.containers[${i}]`;
    const what = c.image
      ? `${field}.image: images are not supported by this node agent yet; use rootfs.hostPath`
      : c.rootfs?.block
        ? `${field}.rootfs.block: block rootfs is not supported by this node agent yet; use rootfs.hostPath`
        : c.devices?.length
          ? `${field}.devices: devices are not supported by this node agent yet`
          : undefined;
    if (what) return { condition: 'ContainersReady', reason: 'NotSupported', message: what };
  }
  return undefined;
}

/**
 * What a network step gives the VM (the netns/tap/tc work of DESIGN §4 step 3). Implemented in
 * src/node-agent/network/; `record` is kept in the state file and handed back to release().
 */
export interface NetworkPlan {
  nics: NicConfig[];
  /** QEMU must be started inside this network namespace. */
  netnsPath?: string;
  record: Record<string, unknown>;
}

export interface NetworkStep {
  prepare(ctx: {
    uid: string;
    spec: KataSandboxSpec;
    runDir: string;
    signal: AbortSignal;
  }): Promise<NetworkPlan>;
  release(record: Record<string, unknown>): Promise<void>;
}

/** Mode none: nothing to prepare, nothing to release. */
export const NO_NETWORK: NetworkStep = {
  prepare: () => Promise.resolve({ nics: [], record: {} }),
  release: () => Promise.resolve(),
};

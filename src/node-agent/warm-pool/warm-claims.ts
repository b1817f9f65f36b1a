// What a sandbox's runtime may ask of the node's warm pools (warm-pools.ts implements it).
import type { AgentConnection } from '../../agent/agent-connection.js';
import type { RunningVm } from '../hypervisor/qemu-process.js';
import type { WarmVmRecord } from './warm-vm-store.js';
import type { WarmShape } from '../../crds/warm-shape.js';

export interface TakenWarmVm {
  record: WarmVmRecord & { qemu: NonNullable<WarmVmRecord['qemu']> };
  vm: RunningVm;
  agent: Pick<AgentConnection, 'client' | 'close'>;
}

/** A VM, or why none was ready although a pool keeps the shape. */
export type WarmTake = { taken: TakenWarmVm } | { miss: string };

export interface WarmPoolClaims {
  /** A pool selecting this node keeps VMs of this shape. */
  keeps(shape: WarmShape): boolean;
  /** Takes a ready warm VM of this shape, at once (no I/O): it is the caller's for life. */
  take(shape: WarmShape): WarmTake;
  /** The sandbox's state file records the VM now: its warm record goes, the pool refills. */
  handedOver(vmUid: string): Promise<void>;
  /** Stops ready warm VMs (other shapes first) until the node's sandboxes and they fit. */
  makeRoom(shape: WarmShape): Promise<void>;
}

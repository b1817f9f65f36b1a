// The network step of a sandbox (DESIGN §4 step 3) for modes netns and cni: find the namespace
// (the one the spec names, checked against the allow-listed roots, or one made here and filled
// by the node's CNI plugins), read its interfaces and routes, wire a tap per interface with tc
// mirred both ways, and say what QEMU and the guest get. What was made goes into the state
// file's record, so release (and a restarted node agent) can undo exactly that.
import { InvalidInputError } from '../agent/errors.js';
import { agentNetworkConfig, type AgentNetworkConfig } from '../agent/network-config.js';
import type { KataSandboxSpec } from '../crds/index.js';
import type { Logger } from '../observability/logger.js';
import {
  CniError,
  CniNetwork,
  sandboxNetnsName,
  type CniAttachment,
  type CniOptions,
} from './network/cni.js';
import { checkNetnsPath } from './network/netns-path.js';
import { readNetns } from './network/netns-reader.js';
import { attach, detach, nicsFor, type TapEndpoint } from './network/tcfilter.js';
import { NO_NETWORK, type NetworkPlan, type NetworkStep } from './spec-support.js';

/** A network step failure with the reason status shows. */
export class NetworkSetupError extends Error {
  constructor(
    readonly reason: 'InvalidNetworkNamespace' | 'CNIFailed' | 'NetworkFailed',
    message: string,
  ) {
    super(message);
    this.name = 'NetworkSetupError';
  }
}

/** What the state file keeps of a prepared network. */
export interface NetworkRecord {
  mode: 'netns' | 'cni';
  nsPath: string;
  endpoints: TapEndpoint[];
  cni?: CniAttachment;
  guest: AgentNetworkConfig;
}

function isRecord(r: Record<string, unknown>): r is Record<string, unknown> & NetworkRecord {
  return (r['mode'] === 'netns' || r['mode'] === 'cni') && typeof r['nsPath'] === 'string';
}

/** The plan of a prepared network. Pure. */
export function planOf(rec: NetworkRecord): NetworkPlan {
  return {
    nics: nicsFor(rec.endpoints),
    netnsPath: rec.nsPath,
    guest: rec.guest,
    record: { ...rec },
  };
}

export interface SandboxNetworkOptions {
  netnsRoots: readonly string[];
  cni: CniOptions;
  log: Logger;
}

export class SandboxNetwork implements NetworkStep {
  private readonly cni: CniNetwork;

  constructor(private readonly opts: SandboxNetworkOptions) {
    this.cni = new CniNetwork(opts.cni);
  }

  validate(spec: KataSandboxSpec): void {
    if (spec.network?.mode === 'netns') this.netnsPathOf(spec);
  }

  private netnsPathOf(spec: KataSandboxSpec): string {
    try {
      return checkNetnsPath(spec.network?.netnsPath ?? '', { roots: this.opts.netnsRoots });
    } catch (err) {
      if (err instanceof InvalidInputError) {
        throw new NetworkSetupError('InvalidNetworkNamespace', err.message);
      }
      throw err;
    }
  }

  async prepare(ctx: {
    uid: string;
    spec: KataSandboxSpec;
    signal: AbortSignal;
  }): Promise<NetworkPlan> {
    const mode = ctx.spec.network?.mode ?? 'none';
    if (mode === 'none') return NO_NETWORK.prepare({ ...ctx, runDir: '' });
    let nsPath: string;
    let att: CniAttachment | undefined;
    if (mode === 'netns') {
      nsPath = this.netnsPathOf(ctx.spec);
    } else {
      // A leftover of an interrupted attempt (same container id) is deleted first: ADD again on
      // top of it could hold a second address.
      const leftover = {
        netnsName: sandboxNetnsName(ctx.uid),
        netnsPath: this.cni.netnsPath(ctx.uid),
        containerId: ctx.uid,
        ifName: this.opts.cni.ifName ?? 'eth0',
      };
      await this.cni.teardown(leftover).catch(() => {});
      ctx.signal.throwIfAborted();
      try {
        att = await this.cni.setup(ctx.uid);
      } catch (err) {
        throw new NetworkSetupError(
          err instanceof CniError ? 'CNIFailed' : 'NetworkFailed',
          `spec.network.mode "cni": ${(err as Error).message}`,
        );
      }
      nsPath = att.netnsPath;
    }
    try {
      ctx.signal.throwIfAborted();
      const guest = agentNetworkConfig(await readNetns(nsPath));
      const endpoints = await attach(
        nsPath,
        guest.interfaces.map((i) => ({ name: i.name, hwAddr: i.hwAddr, mtu: i.mtu })),
      );
      const rec: NetworkRecord = { mode, nsPath, endpoints, guest, ...(att && { cni: att }) };
      return planOf(rec);
    } catch (err) {
      if (att) await this.cni.teardown(att).catch(() => {});
      if (err instanceof NetworkSetupError) throw err;
      throw new NetworkSetupError(
        'NetworkFailed',
        `network namespace ${nsPath}: ${(err as Error).message}`,
      );
    }
  }

  restore(record: Record<string, unknown>): NetworkPlan | undefined {
    return isRecord(record) ? planOf(record) : undefined;
  }

  async check(record: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    if (!isRecord(record) || !record.cni) return;
    signal.throwIfAborted();
    await this.cni.check(record.cni);
  }

  /** Taps and redirects, then (cni) DEL and the namespace; tries everything, throws the first failure. */
  async release(record: Record<string, unknown>): Promise<void> {
    if (!isRecord(record)) return;
    const errors = await detach(record.nsPath, record.endpoints);
    if (record.cni) {
      try {
        await this.cni.teardown(record.cni);
      } catch (err) {
        errors.push(err as Error);
      }
    }
    if (errors.length > 0) {
      this.opts.log.warn({ errors: errors.map((e) => e.message) }, 'network release failed');
      throw errors[0];
    }
  }
}

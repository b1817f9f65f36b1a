// The network step of a sandbox (DESIGN §4 step 3) for modes netns and cni: find the namespace
// (the one the spec names, checked against the allow-listed roots and claimed for this sandbox
// alone, or one made here and filled by the node's CNI plugins), read its interfaces and routes,
// wire a tap per interface with tc mirred both ways, and say what QEMU and the guest get. What
// was made goes into the state file's record, so release (and a restarted node agent) can undo
// exactly that; health() tells whether that wiring is still on the host.
import { InvalidInputError } from '../../agent/errors.js';
import type { KataSandboxSpec } from '../../crds/index.js';
import type { Logger } from '../../observability/logger.js';
import {
  CniError,
  CniNetwork,
  sandboxNetnsName,
  type CniAttachment,
  type CniOptions,
} from './cni.js';
import {
  claimVerdict,
  ClaimLock,
  netnsIdentity,
  readLinks,
  reservedNameVerdict,
  type NetnsRecord,
} from './netns-claim.js';
import { guestNetworkConfig, type GuestNetworkConfig } from './guest-network-config.js';
import { checkNetnsPath } from './netns-path.js';
import { readNetns } from './netns-reader.js';
import { observeWiring, wiringHealth, type NetworkHealth } from './tap-health.js';
import { attach, attachMoved, detach, nicsFor, TAP_SUFFIX, type TapEndpoint } from './tcfilter.js';
import { NO_NETWORK, type NetworkPlan, type NetworkStep, type TapHotplug } from './network-step.js';
import type { StateStore } from '../state-store.js';
import type { StepCondition } from '../../crds/index.js';

/** A network step failure with the reason status shows. */
export class NetworkSetupError extends Error {
  readonly condition: StepCondition = 'NetworkReady';
  constructor(
    readonly reason:
      'InvalidNetworkNamespace' | 'NetnsNotAllowed' | 'NetnsInUse' | 'CNIFailed' | 'NetworkFailed',
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
  guest: GuestNetworkConfig;
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
  /** The network namespace each sandbox of this node's state records holds (uid, nsPath). */
  claims: () => Promise<{ uid: string; nsPath: string }[]>;
  /** Namespaces never handed to a tenant; default: the node agent's and pid 1's. */
  reservedNetns?: readonly string[];
}

const DEFAULT_RESERVED_NETNS = ['/proc/self/ns/net', '/proc/1/ns/net'];

const identityOrUndefined = (p: string): string | undefined => {
  try {
    return netnsIdentity(p);
  } catch {
    return undefined;
  }
};

/** The namespace each sandbox's state record holds: the claims a new netns sandbox must not take. */
export async function storedNetnsClaims(
  store: Pick<StateStore, 'listUids' | 'load'>,
): Promise<{ uid: string; nsPath: string }[]> {
  const out: { uid: string; nsPath: string }[] = [];
  for (const uid of await store.listUids()) {
    const net = (await store.load(uid).catch(() => undefined))?.network;
    if (net && isRecord(net)) out.push({ uid, nsPath: net.nsPath });
  }
  return out;
}

export class SandboxNetwork implements NetworkStep {
  private readonly cni: CniNetwork;
  /** One netns claim (check + wire) at a time on this node. */
  private readonly claimLock = new ClaimLock();

  constructor(private readonly opts: SandboxNetworkOptions) {
    this.cni = new CniNetwork(opts.cni);
  }

  validate(spec: KataSandboxSpec): void {
    if (spec.network?.mode === 'netns') this.netnsPathOf(spec);
  }

  private netnsPathOf(spec: KataSandboxSpec): string {
    const shown = spec.network?.netnsPath ?? '';
    let real: string;
    try {
      real = checkNetnsPath(shown, { roots: this.opts.netnsRoots });
    } catch (err) {
      if (err instanceof InvalidInputError) {
        throw new NetworkSetupError('InvalidNetworkNamespace', err.message);
      }
      throw err;
    }
    const named = reservedNameVerdict(real, shown);
    if (!named.ok) throw new NetworkSetupError(named.reason, named.message);
    return real;
  }

  /**
   * Refuses a namespace another sandbox holds (its tap on the host, or its state record) or that
   * is the node's own. Runs inside the claim lock, before anything is made.
   */
  private async checkClaim(uid: string, nsPath: string, shown: string): Promise<void> {
    const identity = netnsIdentity(nsPath);
    const reserved = (this.opts.reservedNetns ?? DEFAULT_RESERVED_NETNS)
      .map(identityOrUndefined)
      .filter((x): x is string => x !== undefined);
    const records: NetnsRecord[] = (await this.opts.claims()).map((c) => ({
      uid: c.uid,
      identity: identityOrUndefined(c.nsPath),
    }));
    const links = await readLinks(nsPath);
    const verdict = claimVerdict({ uid, shown, identity, reserved, links, records });
    if (!verdict.ok) throw new NetworkSetupError(verdict.reason, verdict.message);
  }

  async prepare(ctx: {
    uid: string;
    spec: KataSandboxSpec;
    signal: AbortSignal;
    hotplug?: TapHotplug;
  }): Promise<NetworkPlan> {
    const mode = ctx.spec.network?.mode ?? 'none';
    if (mode === 'none') return NO_NETWORK.prepare({ ...ctx, runDir: '' });
    if (mode === 'netns') {
      const nsPath = this.netnsPathOf(ctx.spec);
      const shown = ctx.spec.network?.netnsPath ?? '';
      return this.claimLock.run(async () => {
        ctx.signal.throwIfAborted();
        try {
          await this.checkClaim(ctx.uid, nsPath, shown);
        } catch (err) {
          if (err instanceof NetworkSetupError) throw err;
          throw new NetworkSetupError(
            'NetworkFailed',
            `network namespace ${nsPath}: ${(err as Error).message}`,
          );
        }
        return this.wire(ctx.uid, 'netns', nsPath, undefined, ctx.signal, ctx.hotplug);
      });
    }
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
    let att: CniAttachment;
    try {
      att = await this.cni.setup(ctx.uid);
    } catch (err) {
      throw new NetworkSetupError(
        err instanceof CniError ? 'CNIFailed' : 'NetworkFailed',
        `spec.network.mode "cni": ${(err as Error).message}`,
      );
    }
    return this.wire(ctx.uid, 'cni', att.netnsPath, att, ctx.signal, ctx.hotplug);
  }

  /** Reads the namespace and wires a tap per interface; a cni attachment is undone on failure. */
  private async wire(
    uid: string,
    mode: NetworkRecord['mode'],
    nsPath: string,
    att: CniAttachment | undefined,
    signal: AbortSignal,
    hotplug?: TapHotplug,
  ): Promise<NetworkPlan> {
    try {
      signal.throwIfAborted();
      const desc = await readNetns(nsPath);
      // A tap of this sandbox's own interrupted attempt is not an interface of the namespace.
      const links = desc.links.filter((l) => !(l.name.endsWith(TAP_SUFFIX) && l.type === 'tun'));
      const guest = guestNetworkConfig({ ...desc, links });
      const ifaces = guest.interfaces.map((i) => ({ name: i.name, hwAddr: i.hwAddr, mtu: i.mtu }));
      const endpoints = hotplug
        ? await attachMoved(nsPath, hotplug.qemuNetnsPath, ifaces, uid, (tap, n) =>
            hotplug.plug(tap, n),
          )
        : await attach(nsPath, ifaces, uid);
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

  /** Whether the recorded taps and redirects are still on the host (a cheap periodic check). */
  async health(
    uid: string,
    record: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<NetworkHealth> {
    if (!isRecord(record) || record.endpoints.length === 0) return { ok: true };
    signal.throwIfAborted();
    let seen;
    try {
      seen = await observeWiring(record.nsPath, record.endpoints);
    } catch (err) {
      return {
        ok: false,
        reason: 'NetworkLost',
        message: `the VM's network namespace cannot be read: ${(err as Error).message}`,
      };
    }
    return wiringHealth(uid, record.endpoints, seen);
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

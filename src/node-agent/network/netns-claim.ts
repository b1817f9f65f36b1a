// Who owns a network namespace (mode netns): a sandbox may only wire a namespace no other sandbox
// wired. Two sources, either one refuses a claim: the host (each tap the node agent makes carries
// its sandbox uid in its ifalias, so a restarted agent, a lost state file or a second agent on the
// node still see the owner) and the state records of this node's sandboxes (they cover taps made
// before the alias existed and a tap that vanished while its sandbox still holds the namespace).
// Namespaces are compared by identity (nsfs device + inode), never by path: two bind mounts of one
// namespace are the same namespace.
import { statSync } from 'node:fs';
import path from 'node:path';
import { inNetns, runCommand, runOk, type Runner } from './exec.js';
import { NETNS_PATH_FIELD } from './netns-path.js';
import { TAP_SUFFIX, tapOwnerOf } from './tcfilter.js';

/** Names of the namespaces the node agent makes itself (mode cni): `kata-<uid>`. */
export const AGENT_NETNS_PREFIX = 'kata-';

/** A namespace's identity: the nsfs device and inode of its file (`dev:ino`). */
export function netnsIdentity(nsPath: string): string {
  const st = statSync(nsPath, { bigint: true });
  return `${st.dev}:${st.ino}`;
}

/** A link of a namespace as `ip -d -j link show` reports it: what ownership and health read. */
export interface ObservedLink {
  name: string;
  /** The kernel's kind (`veth`, `tun`, …), '' when none. */
  kind: string;
  /** For a tun device: `tap` or `tun`. */
  tunType?: string;
  alias?: string;
}

interface RawLink {
  ifname?: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string; info_data?: { type?: string } };
}

/** Parses `ip -d -j link show`. Pure. */
export function parseLinks(json: string): ObservedLink[] {
  let v: unknown;
  try {
    v = JSON.parse(json.trim() === '' ? '[]' : json);
  } catch (e) {
    throw new Error(`ip -j link: not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(v)) throw new Error('ip -j link: expected a JSON array');
  return (v as RawLink[]).map((l) => ({
    name: l.ifname ?? '',
    kind: l.linkinfo?.info_kind ?? '',
    ...(l.linkinfo?.info_data?.type !== undefined && { tunType: l.linkinfo.info_data.type }),
    ...(l.ifalias !== undefined && { alias: l.ifalias }),
  }));
}

export const LINKS_ARGV = ['ip', '-d', '-j', 'link', 'show'] as const;

/** The links of the namespace at nsPath. */
export async function readLinks(
  nsPath: string,
  opts: { run?: Runner; timeoutMs?: number } = {},
): Promise<ObservedLink[]> {
  const out = await runOk(opts.run ?? runCommand, inNetns(nsPath, LINKS_ARGV), {
    timeoutMs: opts.timeoutMs ?? 10_000,
  });
  return parseLinks(out);
}

/** A sandbox's recorded network namespace (from its state file). */
export interface NetnsRecord {
  uid: string;
  /** Identity of the recorded namespace; undefined when its path no longer exists. */
  identity: string | undefined;
}

export type ClaimVerdict =
  { ok: true } | { ok: false; reason: 'NetnsInUse' | 'NetnsNotAllowed'; message: string };

/**
 * Whether `uid` may wire the namespace: refused when it is the node agent's own namespace or one
 * it made for a cni sandbox (NetnsNotAllowed), when a tap of the agent's in it belongs to another
 * sandbox or carries no owner (NetnsInUse), or when another sandbox's state records it
 * (NetnsInUse). The messages never name the other sandbox. Pure.
 */
export function claimVerdict(input: {
  uid: string;
  shown: string;
  identity: string;
  /** Identities of namespaces the node agent must never wire for a tenant (its own). */
  reserved: readonly string[];
  links: readonly ObservedLink[];
  records: readonly NetnsRecord[];
}): ClaimVerdict {
  const where = `${NETNS_PATH_FIELD} ${JSON.stringify(input.shown)}`;
  if (input.reserved.includes(input.identity)) {
    return {
      ok: false,
      reason: 'NetnsNotAllowed',
      message: `${where} is the node's own network namespace; name a namespace made for this sandbox`,
    };
  }
  const foreignTap = input.links.find(
    (l) => l.name.endsWith(TAP_SUFFIX) && l.kind === 'tun' && tapOwnerOf(l.alias) !== input.uid,
  );
  const recorded = input.records.some((r) => r.uid !== input.uid && r.identity === input.identity);
  if (foreignTap || recorded) {
    return {
      ok: false,
      reason: 'NetnsInUse',
      message: `${where} is in use by another sandbox on this node; a network namespace serves one sandbox at a time`,
    };
  }
  return { ok: true };
}

/** Refuses names of the node agent's own namespaces (`kata-*`) for mode netns. Pure. */
export function reservedNameVerdict(realPath: string, shown: string): ClaimVerdict {
  if (path.basename(realPath).startsWith(AGENT_NETNS_PREFIX)) {
    return {
      ok: false,
      reason: 'NetnsNotAllowed',
      message: `${NETNS_PATH_FIELD} ${JSON.stringify(shown)}: namespaces named ${AGENT_NETNS_PREFIX}* are the node agent's own (mode cni); name a namespace made for this sandbox`,
    };
  }
  return { ok: true };
}

/** Runs claims one at a time (check + wire), so two creates cannot both win one namespace. */
export class ClaimLock {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => {});
    return next;
  }
}

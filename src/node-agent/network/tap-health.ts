// Is a running sandbox's wiring still there? For each recorded endpoint: its tap exists in the
// namespace, is a tap and still carries the sandbox's owner mark, and both ingress redirects
// (interface → tap, tap → interface) are in place. A tap deleted or moved away from the host, or
// a redirect removed, cuts the VM off while QEMU and the guest look healthy; this is how the node
// agent notices. The decision is a pure function of what `ip` and `tc` report.
import { inNetns, runCommand, runOk, type Runner } from './exec.js';
import { LINKS_ARGV, parseLinks, type ObservedLink } from './netns-claim.js';
import { tapOwnerOf, type TapEndpoint } from './tcfilter.js';

export type NetworkHealth = { ok: true } | { ok: false; reason: 'NetworkLost'; message: string };

/** What one check saw: the namespace's links and, per device, its ingress redirect targets. */
export interface ObservedWiring {
  links: readonly ObservedLink[];
  /** Device → the devices its ingress filters redirect to; absent when tc could not list them. */
  redirects: ReadonlyMap<string, readonly string[]>;
}

interface RawFilter {
  options?: { actions?: { kind?: string; mirred_action?: string; to_dev?: string }[] };
}

/** The targets of mirred redirect actions in `tc -j filter show dev X ingress`. Pure. */
export function parseRedirects(json: string): string[] {
  let v: unknown;
  try {
    v = JSON.parse(json.trim() === '' ? '[]' : json);
  } catch (e) {
    throw new Error(`tc -j filter: not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(v)) throw new Error('tc -j filter: expected a JSON array');
  return (v as RawFilter[]).flatMap((f) =>
    (f.options?.actions ?? [])
      .filter((a) => a.kind === 'mirred' && a.mirred_action === 'redirect' && a.to_dev)
      .map((a) => a.to_dev as string),
  );
}

export const filterArgv = (dev: string): string[] => [
  'tc',
  '-j',
  'filter',
  'show',
  'dev',
  dev,
  'ingress',
];

/** The verdict on a sandbox's recorded endpoints from what the host shows. Pure. */
export function wiringHealth(
  uid: string,
  endpoints: readonly TapEndpoint[],
  seen: ObservedWiring,
): NetworkHealth {
  const problems: string[] = [];
  for (const e of endpoints) {
    const tap = seen.links.find((l) => l.name === e.tap);
    if (!tap) {
      problems.push(`tap ${e.tap} of ${e.ifName} is gone from the namespace (deleted or moved)`);
      continue;
    }
    if (tap.kind !== 'tun' || (tap.tunType !== undefined && tap.tunType !== 'tap')) {
      problems.push(`${e.tap} is no longer the sandbox's tap device`);
      continue;
    }
    if (tap.alias !== undefined && tapOwnerOf(tap.alias) !== uid) {
      problems.push(`${e.tap} is marked as another sandbox's tap`);
      continue;
    }
    if (!seen.links.some((l) => l.name === e.ifName)) {
      problems.push(`interface ${e.ifName} is gone from the namespace`);
      continue;
    }
    if (!(seen.redirects.get(e.ifName) ?? []).includes(e.tap)) {
      problems.push(`the redirect ${e.ifName} → ${e.tap} is gone`);
    }
    if (!(seen.redirects.get(e.tap) ?? []).includes(e.ifName)) {
      problems.push(`the redirect ${e.tap} → ${e.ifName} is gone`);
    }
  }
  if (problems.length === 0) return { ok: true };
  return {
    ok: false,
    reason: 'NetworkLost',
    message: `the VM's network path on the host was cut: ${problems.join('; ')}`,
  };
}

/** Reads the links and the redirects of every recorded interface and tap (2n + 1 commands). */
export async function observeWiring(
  nsPath: string,
  endpoints: readonly TapEndpoint[],
  opts: { run?: Runner; timeoutMs?: number } = {},
): Promise<ObservedWiring> {
  const run = opts.run ?? runCommand;
  const o = { timeoutMs: opts.timeoutMs ?? 5_000 };
  const links = parseLinks(await runOk(run, inNetns(nsPath, LINKS_ARGV), o));
  const redirects = new Map<string, string[]>();
  const names = new Set(links.map((l) => l.name));
  for (const dev of endpoints.flatMap((e) => [e.ifName, e.tap])) {
    if (!names.has(dev) || redirects.has(dev)) continue;
    redirects.set(dev, parseRedirects(await runOk(run, inNetns(nsPath, filterArgv(dev)), o)));
  }
  return { links, redirects };
}

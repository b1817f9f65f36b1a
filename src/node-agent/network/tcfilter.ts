// Kata's tcfilter model: per interface of the pod namespace, a tap in that namespace and two tc
// ingress redirects (interface → tap, tap → interface), so every frame the veth receives reaches
// the VM's NIC and back, untouched (the addresses stay on the veth's side, pushed into the guest).
// QEMU runs inside the namespace (netnsLaunchPrefix) with the NIC's MAC = the interface's MAC.
import type { NicConfig } from '../hypervisor/qemu-args.js';
import { inNetns, runCommand, runOk, type Runner } from './exec.js';

export interface NetnsInterface {
  name: string;
  hwAddr: string;
  mtu: number;
}

/** One interface wired to its tap; what the node agent records to tear it down later. */
export interface TapEndpoint {
  ifName: string;
  tap: string;
  mac: string;
  mtu: number;
}

export const TAP_SUFFIX = '_kata';
/** The ifalias prefix of a tap the node agent made; the owner sandbox's uid follows. */
export const TAP_OWNER_PREFIX = 'kata.sandbox.io/uid=';
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/** `tap<N>_kata`, as Kata names them (≤ 15 characters for N < 10^6). */
export function tapName(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > 999_999) {
    throw new Error(`tap index ${index} is out of range`);
  }
  return `tap${index}${TAP_SUFFIX}`;
}

/** The ifalias that marks a tap as made for sandbox `uid` (seen by a restarted node agent). */
export function tapOwnerAlias(uid: string): string {
  if (!/^[A-Za-z0-9-]{1,64}$/.test(uid)) {
    throw new Error(`${JSON.stringify(uid)} cannot go into an interface alias`);
  }
  return `${TAP_OWNER_PREFIX}${uid}`;
}

/** The owner uid in a tap's ifalias, or undefined when it carries none. Pure. */
export function tapOwnerOf(alias: string | undefined): string | undefined {
  if (!alias?.startsWith(TAP_OWNER_PREFIX)) return undefined;
  const uid = alias.slice(TAP_OWNER_PREFIX.length);
  return uid === '' ? undefined : uid;
}

const checkName = (what: string, n: string): string => {
  if (!IFNAME_RE.test(n)) throw new Error(`${what} ${JSON.stringify(n)} is not an interface name`);
  return n;
};

/** The redirect of every frame arriving on `from` to `to` (u32 match-all + mirred egress). */
export function redirectArgv(from: string, to: string): string[][] {
  return [
    ['tc', 'qdisc', 'add', 'dev', from, 'ingress'],
    [
      'tc',
      'filter',
      'add',
      'dev',
      from,
      'parent',
      'ffff:',
      'protocol',
      'all',
      'u32',
      'match',
      'u8',
      '0',
      '0',
      'action',
      'mirred',
      'egress',
      'redirect',
      'dev',
      to,
    ],
  ];
}

/** The commands that make a tap owned by sandbox `owner` (its mark first, before any use). */
export function createTapArgv(tap: string, owner: string): string[][] {
  checkName('tap', tap);
  return [
    ['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap'],
    ['ip', 'link', 'set', 'dev', tap, 'alias', tapOwnerAlias(owner)],
  ];
}

/** The commands (inside the namespace) that wire `ifName` to an existing tap both ways. */
export function wireTapArgv(ifName: string, tap: string, mtu: number): string[][] {
  checkName('interface', ifName);
  checkName('tap', tap);
  return [
    ...(mtu > 0 ? [['ip', 'link', 'set', 'dev', tap, 'mtu', String(mtu)]] : []),
    ...redirectArgv(ifName, tap),
    ...redirectArgv(tap, ifName),
    ['ip', 'link', 'set', 'dev', tap, 'up'],
  ];
}

/**
 * The commands (run inside the namespace) that wire `ifName` to a new tap, in order; the tap's
 * owner mark comes right after it exists, before any traffic is redirected to it.
 */
export function attachArgv(ifName: string, tap: string, mtu: number, owner: string): string[][] {
  checkName('interface', ifName);
  return [...createTapArgv(tap, owner), ...wireTapArgv(ifName, tap, mtu)];
}

/** Undoes attachArgv: the interface's ingress qdisc (its filter goes with it) and the tap. */
export function detachArgv(ifName: string, tap: string): string[][] {
  checkName('interface', ifName);
  checkName('tap', tap);
  return [
    ['tc', 'qdisc', 'del', 'dev', ifName, 'ingress'],
    ['ip', 'link', 'del', 'dev', tap],
  ];
}

/** The argv prefix that starts QEMU inside the namespace (nsenter execs it: the pid is QEMU's). */
export function netnsLaunchPrefix(nsPath: string): string[] {
  return ['nsenter', `--net=${nsPath}`, '--'];
}

/** The NICs for buildQemuArgs: one per endpoint, with the interface's MAC. */
export function nicsFor(endpoints: readonly TapEndpoint[]): NicConfig[] {
  return endpoints.map((e) => ({ tap: e.tap, mac: e.mac }));
}

export interface TcFilterOptions {
  run?: Runner;
  timeoutMs?: number;
}

/**
 * Wires each interface to a tap owned by sandbox `owner` inside the namespace at nsPath.
 * Idempotent: leftovers of an earlier attempt are removed first, so the caller must have checked
 * the namespace is not another sandbox's (netns-claim.ts). On failure, what this call made is
 * removed before it throws.
 */
export async function attach(
  nsPath: string,
  ifaces: readonly NetnsInterface[],
  owner: string,
  opts: TcFilterOptions = {},
): Promise<TapEndpoint[]> {
  const run = opts.run ?? runCommand;
  const o = { timeoutMs: opts.timeoutMs ?? 10_000 };
  const endpoints = ifaces.map((i, n) => ({
    ifName: i.name,
    tap: tapName(n),
    mac: i.hwAddr.toLowerCase(),
    mtu: i.mtu,
  }));
  await detach(nsPath, endpoints, opts);
  try {
    for (const e of endpoints) {
      for (const argv of attachArgv(e.ifName, e.tap, e.mtu, owner)) {
        await runOk(run, inNetns(nsPath, argv), o);
      }
    }
  } catch (err) {
    await detach(nsPath, endpoints, opts);
    throw err;
  }
  return endpoints;
}

/** Removes taps and redirects; missing ones are fine (idempotent). Returns the real failures. */
export async function detach(
  nsPath: string,
  endpoints: readonly TapEndpoint[],
  opts: TcFilterOptions = {},
): Promise<Error[]> {
  const run = opts.run ?? runCommand;
  const o = { timeoutMs: opts.timeoutMs ?? 10_000 };
  const errors: Error[] = [];
  for (const e of endpoints) {
    for (const argv of detachArgv(e.ifName, e.tap)) {
      try {
        await runOk(run, inNetns(nsPath, argv), o);
      } catch (err) {
        // "Cannot find device" / "Invalid handle" / no such qdisc: already gone.
        const msg = (err as Error).message;
        if (
          !/Cannot find device|does not exist|Invalid handle|No such|Cannot delete qdisc with handle of zero|Invalid argument/i.test(
            msg,
          )
        ) {
          errors.push(err as Error);
        }
      }
    }
  }
  return errors;
}

/**
 * As attach, for a VM that already runs in namespace `qemuNs` (a warm VM): each tap is made
 * there, handed to QEMU by name (`plug`: QEMU opens it in its own namespace), then moved into
 * nsPath and wired there; the descriptor QEMU holds follows the device. On failure, the taps
 * are removed from both namespaces before it throws.
 */
export async function attachMoved(
  nsPath: string,
  qemuNs: string,
  ifaces: readonly NetnsInterface[],
  owner: string,
  plug: (tap: string, index: number) => Promise<void>,
  opts: TcFilterOptions = {},
): Promise<TapEndpoint[]> {
  const run = opts.run ?? runCommand;
  const o = { timeoutMs: opts.timeoutMs ?? 10_000 };
  const endpoints = ifaces.map((i, n) => ({
    ifName: i.name,
    tap: tapName(n),
    mac: i.hwAddr.toLowerCase(),
    mtu: i.mtu,
  }));
  const dropInQemuNs = async (): Promise<void> => {
    for (const e of endpoints) {
      await run('nsenter', [`--net=${qemuNs}`, '--', 'ip', 'link', 'del', 'dev', e.tap], o).catch(
        () => undefined,
      );
    }
  };
  await detach(nsPath, endpoints, opts);
  await dropInQemuNs();
  try {
    for (const [n, e] of endpoints.entries()) {
      for (const argv of createTapArgv(e.tap, owner)) await runOk(run, inNetns(qemuNs, argv), o);
      await plug(e.tap, n);
      await runOk(run, inNetns(qemuNs, ['ip', 'link', 'set', 'dev', e.tap, 'netns', nsPath]), o);
      for (const argv of wireTapArgv(e.ifName, e.tap, e.mtu)) {
        await runOk(run, inNetns(nsPath, argv), o);
      }
    }
  } catch (err) {
    await detach(nsPath, endpoints, opts);
    await dropInQemuNs();
    throw err;
  }
  return endpoints;
}

// The CNI specification's runtime side (ADD / CHECK / DEL), for the node agent's `cni` mode: the
// network config list comes from the node's CNI config dir, each plugin gets its config on stdin
// (name and cniVersion injected, prevResult chained), the CNI_* variables in its environment, and
// runs from the "node namespace" (nsenter --net), where bridge plugins put their bridge. The
// sandbox's namespace is made here (`ip netns add kata-<uid>` → /run/netns/kata-<uid>).
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CommandError, inNetns, runCommand, runOk, type Runner } from './exec.js';

export const DEFAULT_CNI_CONF_DIR = '/etc/cni/net.d';
export const DEFAULT_CNI_BIN_DIRS: readonly string[] = ['/opt/cni/bin', '/usr/lib/cni'];
export const NETNS_RUN_DIR = '/run/netns';

export type CniCommand = 'ADD' | 'CHECK' | 'DEL';

export interface CniPluginConf {
  type: string;
  [key: string]: unknown;
}

export interface CniConfList {
  cniVersion: string;
  name: string;
  plugins: CniPluginConf[];
  /** The file it came from. */
  file?: string;
}

/** A CNI result (spec §Result); only the parts used here are typed. */
export interface CniResult {
  cniVersion?: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string; interface?: number }[];
  routes?: { dst: string; gw?: string }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  [key: string]: unknown;
}

/** A plugin's error (spec §Error: `{cniVersion, code, msg, details}` on stdout, non-zero exit). */
export class CniError extends Error {
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly code: number,
    readonly msg: string,
    readonly details: string,
  ) {
    super(
      `CNI plugin ${plugin} ${command} failed (code ${code}): ${msg}${details ? ` (${details})` : ''}`,
    );
    this.name = 'CniError';
  }
}

const NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/** Checks one parsed .conflist (or a single-plugin .conf, wrapped). */
export function parseConfList(text: string, file = '<conflist>'): CniConfList {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not JSON: ${(e as Error).message}`);
  }
  const o = raw as Record<string, unknown>;
  if (!o || typeof o !== 'object') throw new Error(`${file}: not a JSON object`);
  if (typeof o['name'] !== 'string' || !NAME_RE.test(o['name'])) {
    throw new Error(`${file}: "name" is missing or invalid`);
  }
  if (typeof o['cniVersion'] !== 'string') throw new Error(`${file}: "cniVersion" is missing`);
  let plugins: unknown = o['plugins'];
  if (plugins === undefined && typeof o['type'] === 'string') {
    // A .conf: the whole object is the one plugin's config.
    const { name: _n, cniVersion: _v, ...rest } = o;
    plugins = [rest];
  }
  if (!Array.isArray(plugins) || plugins.length === 0) {
    throw new Error(`${file}: "plugins" is missing or empty`);
  }
  plugins.forEach((p: unknown, i) => {
    const t = (p as { type?: unknown } | null)?.type;
    if (typeof t !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(t)) {
      throw new Error(`${file}: plugins[${i}].type is missing or invalid`);
    }
  });
  return {
    cniVersion: o['cniVersion'],
    name: o['name'],
    plugins: plugins as CniPluginConf[],
    file,
  };
}

/**
 * The network config the node uses: the named network, or (like libcni and CRI runtimes) the
 * first `.conflist`/`.conf`/`.json` file in lexical order.
 */
export async function loadConfList(confDir: string, network?: string): Promise<CniConfList> {
  let names: string[];
  try {
    names = (await readdir(confDir)).filter((f) => /\.(conflist|conf|json)$/.test(f)).sort();
  } catch (e) {
    throw new Error(`CNI config dir ${confDir}: ${(e as Error).message}`);
  }
  for (const n of names) {
    const file = path.join(confDir, n);
    const conf = parseConfList(await readFile(file, 'utf8'), file);
    if (network === undefined || conf.name === network) return conf;
  }
  throw new Error(
    network === undefined
      ? `CNI config dir ${confDir} has no network configuration`
      : `CNI config dir ${confDir} has no network named ${JSON.stringify(network)}`,
  );
}

/** The stdin config of one plugin of a list: name and cniVersion injected, prevResult chained. */
export function pluginConfig(
  list: CniConfList,
  index: number,
  prevResult?: CniResult,
): Record<string, unknown> {
  const p = list.plugins[index];
  if (!p) throw new Error(`plugin index ${index} out of range`);
  return {
    ...p,
    name: list.name,
    cniVersion: list.cniVersion,
    ...(prevResult !== undefined && { prevResult }),
  };
}

export interface CniRuntimeConf {
  containerId: string;
  /** The sandbox's namespace path (CNI_NETNS). */
  netns: string;
  ifName: string;
  /** CNI_ARGS, e.g. K8S_POD_NAME=… pairs. */
  args?: Record<string, string>;
}

/** The CNI_* environment of a plugin call (plus PATH so plugins find their helpers). */
export function cniEnv(
  command: CniCommand,
  rt: CniRuntimeConf,
  binDirs: readonly string[],
  basePath = process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
): Record<string, string> {
  const args = Object.entries(rt.args ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
  return {
    PATH: basePath,
    CNI_COMMAND: command,
    CNI_CONTAINERID: rt.containerId,
    CNI_NETNS: rt.netns,
    CNI_IFNAME: rt.ifName,
    CNI_PATH: binDirs.join(':'),
    ...(args !== '' && { CNI_ARGS: args }),
  };
}

/** Parses a plugin's stdout after it exited: a result on success, a CniError otherwise. */
export function parsePluginOutput(
  plugin: string,
  command: CniCommand,
  exitCode: number | null,
  stdout: string,
  stderr: string,
): CniResult | undefined {
  const text = stdout.trim();
  if (exitCode === 0) {
    if (text === '') return undefined; // DEL and CHECK print nothing
    try {
      return JSON.parse(text) as CniResult;
    } catch (e) {
      throw new CniError(
        plugin,
        command,
        999,
        `result is not JSON: ${(e as Error).message}`,
        text.slice(0, 200),
      );
    }
  }
  let err: { code?: unknown; msg?: unknown; details?: unknown } | undefined;
  try {
    err = JSON.parse(text) as typeof err;
  } catch {
    err = undefined;
  }
  if (err && typeof err === 'object' && typeof err.msg === 'string') {
    throw new CniError(
      plugin,
      command,
      typeof err.code === 'number' ? err.code : 999,
      err.msg,
      typeof err.details === 'string' ? err.details : '',
    );
  }
  const tail = (stderr.trim() || text || `exit code ${exitCode}`).split('\n').slice(-3).join('; ');
  throw new CniError(plugin, command, 999, tail, '');
}

export interface CniOptions {
  confDir?: string;
  /** Network name to pick in confDir (default: the first file). */
  network?: string;
  binDirs?: readonly string[];
  /** Where plugins run (their "host" side, where a bridge goes); default: our own namespace. */
  nodeNetns?: string;
  /** Directory named namespaces live in; `ip netns add` uses /run/netns. */
  netnsDir?: string;
  /** Interface name in the sandbox namespace. */
  ifName?: string;
  timeoutMs?: number;
  run?: Runner;
}

function findPlugin(type: string, binDirs: readonly string[]): string {
  for (const d of binDirs) {
    const p = path.join(d, type);
    if (existsSync(p)) return p;
  }
  throw new CniError(
    type,
    'ADD',
    999,
    `plugin ${JSON.stringify(type)} not found in ${binDirs.join(':')}`,
    '',
  );
}

/** Runs one plugin of the list; its stdout result (if any) is returned. */
export async function invokePlugin(
  command: CniCommand,
  list: CniConfList,
  index: number,
  rt: CniRuntimeConf,
  prevResult: CniResult | undefined,
  opts: CniOptions = {},
): Promise<CniResult | undefined> {
  const binDirs = opts.binDirs ?? DEFAULT_CNI_BIN_DIRS;
  const run = opts.run ?? runCommand;
  const conf = pluginConfig(list, index, prevResult);
  const type = conf['type'] as string;
  let bin: string;
  try {
    bin = findPlugin(type, binDirs);
  } catch (e) {
    const ce = e as CniError;
    throw new CniError(ce.plugin, command, ce.code, ce.msg, ce.details);
  }
  const [cmd, ...args] = inNetns(opts.nodeNetns, [bin]);
  const r = await run(cmd!, args, {
    timeoutMs: opts.timeoutMs ?? 30_000,
    input: JSON.stringify(conf),
    env: cniEnv(command, rt, binDirs),
  });
  return parsePluginOutput(type, command, r.code, r.stdout, r.stderr);
}

/** ADD through the list in order, each plugin's result the next one's prevResult. */
export async function cniAddList(
  list: CniConfList,
  rt: CniRuntimeConf,
  opts: CniOptions = {},
): Promise<CniResult> {
  let prev: CniResult | undefined;
  for (let i = 0; i < list.plugins.length; i++) {
    prev = (await invokePlugin('ADD', list, i, rt, prev, opts)) ?? prev;
  }
  return prev ?? { cniVersion: list.cniVersion };
}

/** CHECK through the list in order with the cached ADD result. */
export async function cniCheckList(
  list: CniConfList,
  rt: CniRuntimeConf,
  prevResult: CniResult | undefined,
  opts: CniOptions = {},
): Promise<void> {
  for (let i = 0; i < list.plugins.length; i++) {
    await invokePlugin('CHECK', list, i, rt, prevResult, opts);
  }
}

/** DEL through the list in reverse; every plugin runs even if one fails; the failures are returned. */
export async function cniDelList(
  list: CniConfList,
  rt: CniRuntimeConf,
  prevResult: CniResult | undefined,
  opts: CniOptions = {},
): Promise<Error[]> {
  const errors: Error[] = [];
  for (let i = list.plugins.length - 1; i >= 0; i--) {
    try {
      await invokePlugin('DEL', list, i, rt, prevResult, opts);
    } catch (e) {
      errors.push(e as Error);
    }
  }
  return errors;
}

/** `kata-<uid>`: the name of the namespace made for a sandbox. */
export function sandboxNetnsName(uid: string): string {
  const name = `kata-${uid}`;
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(name)) {
    throw new Error(`${JSON.stringify(uid)} cannot name a network namespace`);
  }
  return name;
}

/** What `setup` made; the node agent records it (state file) and hands it back to check/teardown. */
export interface CniAttachment {
  netnsName: string;
  netnsPath: string;
  network: string;
  containerId: string;
  ifName: string;
  result: CniResult;
}

/**
 * The `cni` mode's namespace life cycle for one sandbox: setup (ip netns add + ADD), check
 * (CHECK, on adoption), teardown (DEL + ip netns del). A failed ADD runs DEL for the whole list
 * and removes the namespace before throwing the plugin's error.
 */
export class CniNetwork {
  constructor(private readonly opts: CniOptions = {}) {}

  private get run(): Runner {
    return this.opts.run ?? runCommand;
  }

  private get o(): { timeoutMs: number } {
    return { timeoutMs: this.opts.timeoutMs ?? 30_000 };
  }

  async conf(): Promise<CniConfList> {
    return loadConfList(this.opts.confDir ?? DEFAULT_CNI_CONF_DIR, this.opts.network);
  }

  netnsPath(uid: string): string {
    return path.join(this.opts.netnsDir ?? NETNS_RUN_DIR, sandboxNetnsName(uid));
  }

  async setup(uid: string): Promise<CniAttachment> {
    const list = await this.conf();
    const netnsName = sandboxNetnsName(uid);
    const netnsPath = this.netnsPath(uid);
    if (!existsSync(netnsPath)) {
      await runOk(this.run, ['ip', 'netns', 'add', netnsName], this.o);
    }
    const rt: CniRuntimeConf = {
      containerId: uid,
      netns: netnsPath,
      ifName: this.opts.ifName ?? 'eth0',
    };
    try {
      const result = await cniAddList(list, rt, this.opts);
      return {
        netnsName,
        netnsPath,
        network: list.name,
        containerId: uid,
        ifName: rt.ifName,
        result,
      };
    } catch (err) {
      await cniDelList(list, rt, undefined, this.opts);
      await this.removeNetns(netnsName).catch(() => {});
      throw err;
    }
  }

  async check(a: CniAttachment): Promise<void> {
    const list = await this.conf();
    await cniCheckList(list, this.rt(a), a.result, this.opts);
  }

  /** DEL (every plugin, even after one fails) then the namespace; throws the first failure after trying all. */
  async teardown(
    a: Pick<CniAttachment, 'netnsName' | 'netnsPath' | 'containerId' | 'ifName'> & {
      result?: CniResult;
    },
  ): Promise<void> {
    const list = await this.conf();
    const errors = await cniDelList(list, this.rt(a), a.result, this.opts);
    try {
      await this.removeNetns(a.netnsName);
    } catch (e) {
      errors.push(e as Error);
    }
    if (errors.length > 0) throw errors[0];
  }

  private rt(a: Pick<CniAttachment, 'netnsPath' | 'containerId' | 'ifName'>): CniRuntimeConf {
    return { containerId: a.containerId, netns: a.netnsPath, ifName: a.ifName };
  }

  private async removeNetns(name: string): Promise<void> {
    if (!existsSync(path.join(this.opts.netnsDir ?? NETNS_RUN_DIR, name))) return;
    try {
      await runOk(this.run, ['ip', 'netns', 'del', name], this.o);
    } catch (e) {
      if (!(e instanceof CommandError) || !/No such file/.test(e.message)) throw e;
    }
  }
}

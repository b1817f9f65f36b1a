// Does the install list cover what the build and the tests use from the system? The programs
// and data files the Makefile, hack/, guest/build.sh and the TypeScript code use are found
// (shell-commands.ts, host-programs.ts), each is resolved to the Debian package that ships it on
// this machine (dpkg -S), and that package must be one a fresh Debian 12 machine gets: one in
// the install list (the Makefile's APT_PACKAGES and the packages given to hack/setup.sh), one of
// Debian's required set (what debootstrap --variant=minbase installs: priority required, plus
// apt), a listed prerequisite, or a Depends/Pre-Depends of one of those (Recommends do not count:
// hack/setup.sh installs with --no-install-recommends). make fresh-check proves the same thing by
// running the steps in such a root; this is the quick check that runs in `make test`.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  bundleSources,
  candidates,
  debianPackages,
  dpkgStatus,
  onPath,
  type DpkgPackage,
} from './host-programs.js';
import {
  makeVariable,
  makefileRecipes,
  setupScriptPackages,
  shellCommands,
} from './shell-commands.js';

/**
 * The README's prerequisites, installed by the user rather than by `make setup`. kubectl is one
 * because Debian 12's kubernetes-client is 1.20, too old for the 1.37 control plane (the tests
 * and the demo use `kubectl create token`, `apply --server-side`, `kustomize`).
 */
export const PREREQUISITE_PROGRAMS = ['node', 'npm', 'npx', 'go', 'git', 'make', 'kubectl'];
const PREREQUISITE_PACKAGES = ['git', 'make'];
/**
 * Programs used only where the machine already has their package: systemd-run by the node
 * agent's systemd-scope launch strategy, which needs systemd as the host's init.
 */
const PRESENT_WHERE_USED: Record<string, string> = { 'systemd-run': 'systemd' };
/** Debian's required set: minbase is priority required plus apt. */
const MINBASE_EXTRA = ['apt'];

export interface Use {
  /** A program name, or a file path (absolute, or relative to an include dir). */
  what: string;
  /** The file that uses it. */
  usedBy: string;
  /** The file on this machine, when found. */
  file?: string;
}

export interface Problem extends Use {
  /** The package that ships it here (absent: no package does). */
  pkg?: string;
  message: string;
}

const read = (repo: string, f: string): string => readFileSync(path.join(repo, f), 'utf8');

function filesUnder(repo: string, dir: string, ext: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(repo, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith(ext)) out.push(r);
    }
  };
  if (existsSync(path.join(repo, dir))) walk(dir);
  return out.sort();
}

/** The shell code of the repo: Makefile recipes, hack/*.sh, guest/build.sh, .ci/run. */
function shellSources(repo: string, makefile: string): Record<string, string> {
  const out: Record<string, string> = { Makefile: makefileRecipes(makefile) };
  for (const f of [...filesUnder(repo, 'hack', '.sh'), 'guest/build.sh', '.ci/run']) {
    if (existsSync(path.join(repo, f))) out[f] = read(repo, f);
  }
  return out;
}

/** Absolute paths of system files named in shell code (a binary run by path, an include dir). */
function systemPaths(text: string): string[] {
  const re = /(?<![\w$}./-])\/(?:usr|bin|sbin|lib|lib64|etc|opt)\/[A-Za-z0-9._/+-]*[A-Za-z0-9_+-]/g;
  return [...new Set([...text.matchAll(re)].map((m) => m[0]))];
}

/** protoc's system include dirs (-I /abs) and the imports of proto/ found only there. */
function protoIncludes(repo: string): Use[] {
  const gen = read(repo, 'hack/gen-proto.sh');
  const dirs = [...gen.matchAll(/-I\s+(\/[^\s\\]+)/g)].map((m) => m[1] ?? '');
  const uses: Use[] = [];
  for (const f of filesUnder(repo, 'proto', '.proto')) {
    for (const m of read(repo, f).matchAll(/^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"/gm)) {
      const imp = m[1] ?? '';
      if (existsSync(path.join(repo, 'proto', imp))) continue;
      const file = dirs.map((d) => path.join(d, imp)).find((p) => existsSync(p));
      uses.push({ what: imp, usedBy: f, ...(file ? { file } : {}) });
    }
  }
  return uses;
}

/** Everything the repo uses from the system, each with the file it is on this machine. */
export async function systemUses(repo: string, makefile: string): Promise<Use[]> {
  const uses: Use[] = [];
  const program = (what: string, usedBy: string): void => {
    const file = what.startsWith('/') ? (existsSync(what) ? what : undefined) : onPath(what);
    uses.push({ what, usedBy, ...(file ? { file } : {}) });
  };
  for (const [f, text] of Object.entries(shellSources(repo, makefile))) {
    for (const c of shellCommands(text)) program(c, f);
    for (const m of text.matchAll(/command -v\s+"?([a-z][a-z0-9._+-]*)/g)) program(m[1] ?? '', f);
    for (const p of systemPaths(text)) {
      if (existsSync(p) && statSync(p).isFile()) uses.push({ what: p, usedBy: f, file: p });
    }
  }
  // TypeScript: the programs it spawns (src/, hack/, test/); plus, for the node agent, the
  // argv arrays (`['ip', ...]`) its bundle holds, as the Dockerfile check derives them.
  const ts = [...filesUnder(repo, 'src', '.ts'), ...filesUnder(repo, 'hack', '.ts')]
    .concat(filesUnder(repo, 'test', '.ts'))
    .filter((f) => !f.startsWith('src/generated/'));
  for (const f of ts) for (const c of candidates(read(repo, f)).strong) program(c, f);
  for (const f of await bundleSources(repo, 'src/node-agent/main.ts')) {
    for (const c of candidates(read(repo, f)).weak) if (onPath(c)) program(c, f);
  }
  uses.push(...protoIncludes(repo));
  return uses;
}

/** The packages the install list names: APT_PACKAGES and every literal hack/setup.sh call. */
export function installList(repo: string, makefile: string): string[] {
  const pkgs = new Set(makeVariable(makefile, 'APT_PACKAGES'));
  for (const text of Object.values(shellSources(repo, makefile))) {
    for (const p of setupScriptPackages(text)) pkgs.add(p);
  }
  return [...pkgs].sort();
}

/**
 * What a fresh machine has after `make setup`: the roots and their Depends/Pre-Depends, an
 * alternative (`a | b`) taken as the first one installed here, a virtual name as its providers.
 */
export function closure(roots: string[], status: Map<string, DpkgPackage>): Set<string> {
  const providers = new Map<string, string[]>();
  for (const [name, p] of status) {
    for (const v of p.provides) providers.set(v, [...(providers.get(v) ?? []), name]);
  }
  const resolve = (n: string): string[] => (status.has(n) ? [n] : (providers.get(n) ?? []));
  const have = new Set<string>();
  const todo = [...roots];
  while (todo.length > 0) {
    const n = todo.pop() ?? '';
    if (have.has(n)) continue;
    have.add(n);
    for (const group of status.get(n)?.depends ?? []) {
      const pick = group.map(resolve).find((r) => r.length > 0) ?? [];
      todo.push(...pick);
    }
  }
  return have;
}

/** The uses that a fresh machine with the install list would lack, each with a message. */
export async function installListProblems(repo: string, makefile: string): Promise<Problem[]> {
  const uses = await systemUses(repo, makefile);
  const status = dpkgStatus();
  const list = installList(repo, makefile);
  const base = [...status]
    .filter(([, p]) => p.priority === 'required' || p.essential)
    .map(([n]) => n);
  const fresh = closure([...list, ...base, ...MINBASE_EXTRA, ...PREREQUISITE_PACKAGES], status);
  const owners = debianPackages(uses.flatMap((u) => (u.file ? [u.file] : [])));
  const problems: Problem[] = [];
  const seen = new Set<string>();
  for (const u of uses) {
    if (PREREQUISITE_PROGRAMS.includes(path.basename(u.what)) || seen.has(u.what)) continue;
    const pkg = u.file ? owners.get(u.file) : undefined;
    if (pkg && PRESENT_WHERE_USED[u.what] === pkg) continue;
    const isProgram = !u.what.includes('/') || u.what.startsWith('/');
    let message: string | undefined;
    if (!u.file) {
      // A word that is no program here (a case pattern, a for-list word) is not a use; a file
      // an import names must exist.
      if (!isProgram) message = `${u.what} (used by ${u.usedBy}) is not on this machine`;
    } else if (!pkg) {
      // Files of no package (config, /usr/local) are not ours to install; programs must be.
      if (!u.what.startsWith('/')) {
        message = `${u.what} (used by ${u.usedBy}) is ${u.file}, which no Debian package ships`;
      }
    } else if (!fresh.has(pkg)) {
      message =
        `${u.what} (used by ${u.usedBy}) needs the Debian package ${pkg}, which is not in ` +
        `the install list (APT_PACKAGES or a hack/setup.sh call), nor a dependency of it, ` +
        `nor in Debian's required set`;
    }
    if (message) {
      seen.add(u.what);
      problems.push({ ...u, ...(pkg ? { pkg } : {}), message });
    }
  }
  return problems;
}

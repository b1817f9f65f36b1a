// What the code runs on the host, and which Debian package ships it: shared by the Dockerfile
// check (the runtime image's packages) and the install-list check (`make setup`'s packages).
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, realpathSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

export function onPath(cmd: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    const p = path.join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The spellings dpkg may know a file by (usrmerge: /bin/x is /usr/bin/x; links resolved). */
function spellings(file: string): string[] {
  let real = file;
  try {
    real = realpathSync(file);
  } catch {
    // not on this machine: only its own spelling
  }
  const out = new Set<string>();
  for (const f of [file, real]) {
    out.add(f);
    out.add(f.startsWith('/usr/') ? f.slice(4) : `/usr${f}`);
  }
  return [...out];
}

/** The Debian package shipping each file, for those some installed package ships. */
export function debianPackages(files: string[]): Map<string, string> {
  const owner = new Map<string, string>();
  const all = [...new Set(files.flatMap(spellings))];
  if (all.length === 0) return owner;
  // dpkg -S exits 1 when any path is unowned; the owned ones are still on stdout.
  const r = spawnSync('dpkg', ['-S', ...all], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('diversion ')) continue;
    const m = /^([^:,]+)(?::[a-z0-9]+)?(?:, [^:]+)*: (.+)$/.exec(line);
    if (m) owner.set(m[2] ?? '', m[1] ?? '');
  }
  const found = new Map<string, string>();
  for (const f of files) {
    const pkg = spellings(f)
      .map((s) => owner.get(s))
      .find(Boolean);
    if (pkg) found.set(f, pkg);
  }
  return found;
}

/** The Debian package shipping a file (usrmerge: dpkg may know it as /bin/x or /usr/bin/x). */
export function debianPackage(file: string): string {
  const pkg = debianPackages([file]).get(file);
  if (!pkg) throw new Error(`no Debian package ships ${file}`);
  return pkg;
}

/** The repo's own source files the bundle of an entry point (e.g. src/node-agent/main.ts) holds. */
export async function bundleSources(repo: string, entry: string): Promise<string[]> {
  const result = await build({
    entryPoints: [path.join(repo, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    write: false,
    metafile: true,
    packages: 'external',
    logLevel: 'silent',
    absWorkingDir: repo,
  });
  return Object.keys(result.metafile.inputs).filter((f) => f.startsWith('src/'));
}

/**
 * Commands named in a TypeScript source file. `strong`: the command of a spawn/execFile/run call
 * or a *_BINARY / *_RUN constant (certainly a program); `weak`: the first element of an array
 * literal of strings (an argv, or just a list: only a program if one of that name is installed).
 */
export function candidates(source: string): { strong: string[]; weak: string[] } {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const all = (re: RegExp): string[] => [...code.matchAll(re)].map((m) => m[1] ?? '');
  return {
    strong: [
      ...all(
        /\b(?:spawn|spawnSync|execFile|execFileSync|execFileAsync|run|runOk)\(\s*'([A-Za-z0-9_.+-]+)'/g,
      ),
      ...all(/\b[A-Z_]*(?:BINARY|_RUN)\s*=\s*'([A-Za-z0-9_.+-]+)'/g),
    ],
    weak: all(/\[\s*'([A-Za-z0-9_.+-]+)'\s*,/g),
  };
}

export interface DpkgPackage {
  priority: string;
  essential: boolean;
  /** Pre-Depends and Depends: each an alternative list of package names. */
  depends: string[][];
  provides: string[];
}

/** The packages installed on this machine, with what the install-list closure needs. */
export function dpkgStatus(): Map<string, DpkgPackage> {
  const out = execFileSync(
    'dpkg-query',
    [
      '-W',
      '-f=${db:Status-Abbrev}\\t${Package}\\t${Priority}\\t${Essential}\\t${Pre-Depends}, ${Depends}\\t${Provides}\\n',
    ],
    { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 },
  );
  const names = (list: string): string[] =>
    list
      .split(',')
      .map((d) => d.trim().split(/[\s(:]/)[0] ?? '')
      .filter(Boolean);
  const pkgs = new Map<string, DpkgPackage>();
  for (const line of out.split('\n')) {
    const [status, name, priority, essential, deps, provides] = line.split('\t');
    if (!name || !status?.startsWith('ii')) continue;
    pkgs.set(name, {
      priority: priority ?? '',
      essential: essential === 'yes',
      depends: (deps ?? '')
        .split(',')
        .map((group) => names(group.replaceAll('|', ',')))
        .filter((g) => g.length > 0),
      provides: names(provides ?? ''),
    });
  }
  return pkgs;
}

// The Dockerfile, checked without a container engine (this machine has none):
//   - every file it copies from the build context exists and is not excluded by .dockerignore;
//   - every `--from` names an earlier stage;
//   - the runtime stage's apt packages are exactly the ones providing the host binaries the node
//     agent runs, plus the CNI plugins.
// The binaries are derived from the code, not listed here: esbuild's metafile gives every source
// file in the node agent's bundle; in them, the command of each spawn/execFile/run call and the
// first element of each argv array literal (`['ip', ...]`, `['nsenter', ...]`) and constants
// named *_BINARY / *_RUN are candidates; a candidate that is an executable on this machine's PATH
// is a host binary (the node agent's e2e tests run here, so each one it calls is installed), and
// dpkg says which Debian package ships it. There is no single exported list of host binaries in
// src/node-agent/, hence this grep over the bundle's own sources.
import { describe, expect, it } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { DEFAULTS } from '../../../src/node-agent/config.js';
import { DEFAULT_CNI_BIN_DIRS } from '../../../src/node-agent/network/cni.js';
import { bundleSources, candidates, debianPackage, onPath } from './host-programs.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const DOCKERFILE = readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
const DOCKERIGNORE = readFileSync(path.join(REPO, '.dockerignore'), 'utf8');

/** Packages installed for something other than a binary the code names literally. */
const NOT_FROM_CODE: Record<string, string> = {
  // The CNI plugins (bridge, host-local, loopback, ...) are run by the names in the node's
  // network configs, from the configured plugin dirs (default includes /usr/lib/cni).
  'containernetworking-plugins': 'CNI plugins for network mode cni',
};

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Instructions with continuation lines joined and comments dropped. */
function instructions(text: string): { list: Instruction[]; stages: string[] } {
  const list: Instruction[] = [];
  const stages: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (current === '' && (line.trim() === '' || line.trimStart().startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (current + line).trim();
    current = '';
    const m = /^(\w+)\s+([\s\S]*)$/.exec(full);
    if (!m) continue;
    const op = (m[1] ?? '').toUpperCase();
    if (op === 'FROM') stages.push(/\bAS\s+(\S+)/i.exec(m[2] ?? '')?.[1] ?? `#${stages.length}`);
    list.push({ op, args: m[2] ?? '', stage: stages.length - 1 });
  }
  return { list, stages };
}

const { list, stages } = instructions(DOCKERFILE);

/** .dockerignore as written here: `*` and then `!path` re-includes (files, or dirs with `/`). */
function included(rel: string): boolean {
  const lines = DOCKERIGNORE.split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  let inc = true;
  for (const l of lines) {
    const neg = l.startsWith('!');
    const pat = (neg ? l.slice(1) : l).replace(/\/$/, '');
    const hit = pat === '*' || rel === pat || rel.startsWith(`${pat}/`);
    if (hit) inc = neg;
  }
  return inc;
}

function copySources(): string[] {
  const out: string[] = [];
  for (const i of list) {
    if (i.op !== 'COPY' && i.op !== 'ADD') continue;
    const words = i.args.split(/\s+/).filter(Boolean);
    if (words.some((w) => w.startsWith('--from='))) continue;
    const srcs = words.filter((w) => !w.startsWith('--')).slice(0, -1);
    out.push(...srcs);
  }
  return out;
}

function runtimePackages(): string[] {
  const last = stages.length - 1;
  const pkgs: string[] = [];
  for (const i of list.filter((x) => x.stage === last && x.op === 'RUN')) {
    const m = /apt-get install ([^&;]*)/.exec(i.args);
    if (!m) continue;
    pkgs.push(...(m[1] ?? '').split(/\s+/).filter((w) => w && !w.startsWith('-')));
  }
  return pkgs;
}

/**
 * Packages of programs the code certainly runs but this machine may lack (so dpkg cannot say):
 * systemd-run is only used where systemd is the host's init.
 */
const PACKAGE_IF_NOT_INSTALLED: Record<string, string> = { 'systemd-run': 'systemd' };

/** Whether a 64-bit ELF file names a program interpreter (PT_INTERP): dynamically linked. */
function hasElfInterpreter(elf: Buffer): boolean {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) throw new Error('not a 64-bit ELF file');
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === 3) return true;
  }
  return false;
}

describe('Dockerfile', () => {
  it('has the build, host-fs, kernel, guest and runtime stages, and --from names only earlier stages', () => {
    // host-fs and kernel before guest: the guest's terminal relay is built with that stage's Go
    // toolchain, and its default kernel is the kernel stage's.
    expect(stages.slice(0, 4)).toEqual(['build', 'host-fs', 'kernel', 'guest']);
    expect(stages).toHaveLength(5);
    for (const i of list) {
      const from = /--from=(\S+)/.exec(i.args)?.[1];
      if (from) expect(stages.slice(0, i.stage)).toContain(from);
      if (i.op === 'FROM' && i.stage > 0) {
        const base = i.args.split(/\s+/)[0] ?? '';
        if (!base.startsWith('$')) expect(stages.slice(0, i.stage)).toContain(base);
      }
    }
  });

  it('copies only files that exist and that .dockerignore lets into the context', () => {
    const srcs = copySources();
    expect(srcs).toEqual(expect.arrayContaining(['package.json', 'src/', 'guest/']));
    for (const s of srcs) {
      const rel = s.replace(/\/$/, '');
      expect({ s, exists: existsSync(path.join(REPO, rel)) }).toEqual({ s, exists: true });
      expect({ s, inContext: included(rel) }).toEqual({ s, inContext: true });
    }
  });

  it('bundles each component from a main.ts that exists, and links the entrypoints', () => {
    const loop = /for entry in ([^;]+);/.exec(DOCKERFILE)?.[1]?.trim().split(/\s+/) ?? [];
    expect(loop.map((e) => e.split(':')[1]).sort()).toEqual([
      'kata-api',
      'kata-controller',
      'kata-leak-audit',
      'kata-node-agent',
    ]);
    for (const e of loop) {
      expect(existsSync(path.join(REPO, 'src', e.split(':')[0] ?? '', 'main.ts'))).toBe(true);
      const bin = e.split(':')[1];
      expect(DOCKERFILE).toContain(`/opt/kata/bin/${bin}.mjs /usr/local/bin/${bin}`);
    }
  });

  it("the build stage's bundle step makes entrypoints that run without node_modules", () => {
    // The step as written in the Dockerfile (our own text, run by bash like the RUN would be),
    // with its output directory moved to a scratch dir; then each bundle starts from elsewhere.
    const run = list.find((i) => i.stage === 0 && i.op === 'RUN' && i.args.includes('for entry'));
    const step = /(for entry in [\s\S]*)$/.exec(run?.args ?? '')?.[1] ?? '';
    expect(step).toContain('esbuild');
    const out = mkdtempSync(path.join(tmpdir(), 'kata-bundle-check-'));
    try {
      execFileSync('bash', ['-euo', 'pipefail', '-c', step.replaceAll('/out/', `${out}/`)], {
        cwd: REPO,
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 180_000,
      });
      for (const [bin, says] of [
        ['kata-controller', 'kata-controller: schedules'],
        ['kata-node-agent', 'kata-node-agent: runs'],
        ['kata-leak-audit', 'kata-leak-audit: lists'],
        ['kata-api', 'kata-api: serves'],
      ] as const) {
        const help = execFileSync(path.join(out, 'bin', `${bin}.mjs`), ['--help'], {
          cwd: out,
          encoding: 'utf8',
          timeout: 30_000,
        });
        expect(help).toContain(says);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 240_000);

  it('builds kata-host-fs statically from host-fs/ and installs it where the node agent looks', () => {
    // The stage's build step as written, run here with its output moved to a scratch dir: it
    // must make a static binary that answers (with its usage error) when run.
    const stage = stages.indexOf('host-fs');
    const run = list.find(
      (i) => i.stage === stage && i.op === 'RUN' && i.args.includes('go build'),
    );
    const step = run?.args ?? '';
    expect(step).toContain('CGO_ENABLED=0');
    const out = mkdtempSync(path.join(tmpdir(), 'kata-host-fs-check-'));
    try {
      execFileSync('bash', ['-euo', 'pipefail', '-c', step.replaceAll('/out/', `${out}/`)], {
        cwd: path.join(REPO, 'host-fs'),
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 180_000,
      });
      const bin = path.join(out, 'kata-host-fs');
      expect({ bin, interpreter: hasElfInterpreter(readFileSync(bin)) }).toEqual({
        bin,
        interpreter: false,
      });
      const usage = spawnSync(bin, [], { encoding: 'utf8', timeout: 10_000 });
      expect({ status: usage.status, code: JSON.parse(usage.stderr).code }).toEqual({
        status: 2,
        code: 'USAGE',
      });
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    expect(DOCKERFILE).toContain(
      `COPY --from=host-fs /out/kata-host-fs ${DEFAULTS.hostFsBinary}\n`,
    );
  }, 240_000);

  it('runs the commands and guest image directory the manifests in deploy/ use', () => {
    const docs = ['deploy/controller/deployment.yaml', 'deploy/node-agent/daemonset.yaml'].map(
      (f) =>
        parseAllDocuments(readFileSync(path.join(REPO, f), 'utf8'))[0]?.toJS() as {
          spec: {
            template: {
              spec: {
                containers: { command: string[]; env?: { name: string; value?: string }[] }[];
              };
            };
          };
        },
    );
    const commands = docs.map((d) => d.spec.template.spec.containers[0]?.command[0]);
    expect(commands).toEqual(['kata-controller', 'kata-node-agent']);
    const guestDir = docs[1]?.spec.template.spec.containers[0]?.env?.find(
      (e) => e.name === 'GUEST_IMAGE_DIR',
    )?.value;
    expect(DOCKERFILE).toContain(`COPY --from=guest /out/guest/ ${guestDir}/`);
  });

  it("installs exactly the packages of the host binaries the node agent's code runs", async () => {
    // The node agent's and the leak audit's (run in the node agent's container).
    const sources = [
      ...new Set([
        ...(await bundleSources(REPO, 'src/node-agent/main.ts')),
        ...(await bundleSources(REPO, 'src/node-agent/leak-audit/main.ts')),
      ]),
    ];
    expect(sources).toEqual(expect.arrayContaining(['src/node-agent/main.ts']));
    const binaries = new Map<string, string>();
    const needed = new Map<string, string[]>();
    const need = (pkg: string, bin: string): void => {
      const bins = needed.get(pkg) ?? [];
      if (!bins.includes(bin)) needed.set(pkg, [...bins, bin]);
    };
    for (const f of sources) {
      const { strong, weak } = candidates(readFileSync(path.join(REPO, f), 'utf8'));
      for (const c of [...strong, ...weak]) {
        const p = onPath(c);
        if (p) binaries.set(c, p);
        else if (strong.includes(c)) {
          const pkg = PACKAGE_IF_NOT_INSTALLED[c];
          // A program the node agent runs, not installed here and not in the table above.
          expect({ program: c, source: f, pkg }).toEqual({
            program: c,
            source: f,
            pkg: expect.any(String),
          });
          need(pkg ?? '', c);
        }
      }
    }
    // The ones we know it runs must be found, or the derivation has gone blind.
    expect([...binaries.keys()]).toEqual(
      expect.arrayContaining(['qemu-system-x86_64', 'ip', 'tc', 'nsenter', 'mount', 'umount']),
    );
    for (const [bin, file] of binaries) need(debianPackage(file), bin);
    for (const [bin, pkg] of Object.entries(PACKAGE_IF_NOT_INSTALLED)) {
      if (binaries.has(bin))
        expect({ bin, pkg: debianPackage(binaries.get(bin) ?? '') }).toEqual({ bin, pkg });
    }
    const installed = runtimePackages();
    for (const [pkg, bins] of needed) {
      expect({ bins, pkg, installed: installed.includes(pkg) }).toEqual({
        bins,
        pkg,
        installed: true,
      });
    }
    for (const pkg of installed) {
      const why = needed.get(pkg) ?? NOT_FROM_CODE[pkg];
      expect({ pkg, neededFor: why ?? 'nothing' }).not.toEqual({ pkg, neededFor: 'nothing' });
    }
  });

  it('installs the CNI plugins where the node agent looks for them by default', () => {
    const files = execFileSync('dpkg', ['-L', 'containernetworking-plugins'], {
      encoding: 'utf8',
      timeout: 10_000,
    }).split('\n');
    const dirs = new Set(files.filter((f) => f.endsWith('/bridge')).map((f) => path.dirname(f)));
    expect([...dirs].some((d) => DEFAULT_CNI_BIN_DIRS.includes(d))).toBe(true);
  });
});

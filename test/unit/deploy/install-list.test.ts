// The install list (APT_PACKAGES and the hack/setup.sh calls) against what the Makefile, hack/,
// guest/build.sh and the code use from the system, resolved to Debian packages on this machine
// (see install-list.ts). The quick form of `make fresh-check`, which runs the steps in a clean
// Debian 12 root. Issue 15: protoc's google/protobuf/empty.proto is in libprotobuf-dev, which
// protobuf-compiler only recommends; the second test proves this check catches that.
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installList, installListProblems, systemUses } from './install-list.js';
import { makeVariable, shellCommands } from './shell-commands.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MAKEFILE = readFileSync(path.join(REPO, 'Makefile'), 'utf8');

describe('the install list', () => {
  it('has a package for every program and data file the build and tests use', async () => {
    const uses = await systemUses(REPO, MAKEFILE);
    const found = new Set(uses.filter((u) => u.file).map((u) => u.what));
    // The ones we know are used must be found, or the derivation has gone blind.
    for (const known of [
      'protoc',
      'google/protobuf/empty.proto',
      'qemu-system-x86_64',
      'crun',
      'depmod',
      'cpio',
      'jq',
      'openssl',
      'skopeo',
      'docker-registry',
      'htpasswd',
      '/bin/busybox',
    ]) {
      expect({ known, found: found.has(known) }).toEqual({ known, found: true });
    }
    const problems = await installListProblems(REPO, MAKEFILE);
    expect(problems.map((p) => p.message)).toEqual([]);
  }, 120_000);

  it('names the file and the package when one is missing (libprotobuf-dev, issue 15)', async () => {
    expect(makeVariable(MAKEFILE, 'APT_PACKAGES')).toContain('libprotobuf-dev');
    const without = MAKEFILE.replace(/(APT_PACKAGES\s*:=[^\n]*)\blibprotobuf-dev /, '$1');
    expect(installList(REPO, without)).not.toContain('libprotobuf-dev');
    const problems = await installListProblems(REPO, without);
    expect(problems).toEqual([
      expect.objectContaining({
        what: 'google/protobuf/empty.proto',
        pkg: 'libprotobuf-dev',
        usedBy: 'proto/agent.proto',
      }),
    ]);
    expect(problems[0]?.message).toMatch(/google\/protobuf\/empty\.proto .*libprotobuf-dev/);
  }, 120_000);

  it('includes the packages guest/build.sh installs for itself', () => {
    expect(installList(REPO, MAKEFILE)).toEqual(expect.arrayContaining(['kmod', 'xz-utils']));
  });
});

describe('make test and make fresh-check', () => {
  it('run the same install/generate steps, PREPARE_TARGETS, each a target of the Makefile', () => {
    const prepare = makeVariable(MAKEFILE, 'PREPARE_TARGETS');
    expect(prepare[0]).toBe('setup');
    expect(/^test: \$\(PREPARE_TARGETS\)/m.test(MAKEFILE)).toBe(true);
    expect(/^fresh-check:.*\n\t.*hack\/fresh-check\.sh \$\(PREPARE_TARGETS\)/m.test(MAKEFILE)).toBe(
      true,
    );
    for (const t of prepare)
      expect({ t, isTarget: new RegExp(`^${t}:`, 'm').test(MAKEFILE) }).toEqual({
        t,
        isTarget: true,
      });
  });
});

describe('shellCommands', () => {
  it('finds commands after separators, in $( ) inside double quotes, after assignments', () => {
    const script = [
      'set -e',
      'X=1 protoc -I x "$(dirname "$0")" && jq . | sort',
      'if ! grep -q a b; then cpio -o; fi',
      'v=$(readlink -f "$(command -v crun)") # comment: ignored words',
      'exec 9>lock; flock 9',
    ].join('\n');
    expect(shellCommands(script)).toEqual(
      ['cpio', 'dirname', 'flock', 'grep', 'jq', 'protoc', 'readlink', 'sort'].sort(),
    );
  });

  it('skips quoted text, here-documents, arrays, case patterns, for lists and own functions', () => {
    const script = [
      "node -e '",
      'const fs = require("fs");',
      "'",
      'cat >f <<EOF',
      'qemu-img create x',
      'EOF',
      'MODS=(virtio ext4)',
      'case "$c" in none | lz4) ;; esac',
      'for m in depmod modinfo; do echo "$m (run me)"; done',
      'log() { echo "$*"; }',
      'log hello',
    ].join('\n');
    expect(shellCommands(script)).toEqual(['cat', 'node']);
  });
});

// Where the Kata 1.x peers are. They are built by hand, outside this repository, from the public
// Kata 1.x agent source: this workplace keeps code fetched from public repositories — and any
// script or recipe that would build it — out of commits, so no build of them is committed here
// (docs/architecture.md, "Kata 1.x peers"). A test whose peer is missing is skipped, and its
// title says what is missing and where it was looked for. Not a test file itself.
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

export type Found = { path: string } | { missing: string };

/** ${CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/kata-sandbox-operator}/peers */
export function peersDir(): string {
  const cache =
    process.env['CACHE_DIR'] ??
    path.join(
      process.env['XDG_CACHE_HOME'] ?? path.join(homedir(), '.cache'),
      'kata-sandbox-operator',
    );
  return path.join(cache, 'peers');
}

function find(envName: string, fallback: string, what: string): Found {
  const wanted = process.env[envName] ?? fallback;
  return existsSync(wanted)
    ? { path: wanted }
    : { missing: `${what} is not on this machine (looked for ${wanted}; set ${envName})` };
}

/** test/peers/kata1-client, built against the 1.x tree's protocols/client. */
export function kata1Client(): Found {
  return find(
    'KATA1_CLIENT_BINARY',
    path.join(peersDir(), 'bin/kata1-client'),
    'the Kata 1.x client peer',
  );
}

/** The Kata 1.x agent itself (`kata-agent`, static). */
export function kata1Agent(): Found {
  return find('KATA1_AGENT_BINARY', path.join(peersDir(), 'bin/kata-agent'), 'the Kata 1.x agent');
}

/** The 1.x source tree (its protocols/grpc/*.proto are read, never built from here). */
export function kata1SourceTree(): Found {
  const fromEnv = process.env['KATA1_SOURCE_TREE'];
  if (fromEnv) return find('KATA1_SOURCE_TREE', fromEnv, 'the Kata 1.x source tree');
  const dir = peersDir();
  const gopaths = existsSync(dir) ? readdirSync(dir).filter((d) => d.startsWith('gopath-')) : [];
  for (const g of gopaths.sort()) {
    const tree = path.join(dir, g, 'src/github.com/kata-containers/agent');
    if (existsSync(path.join(tree, 'protocols/grpc/agent.proto'))) return { path: tree };
  }
  return {
    missing: `the Kata 1.x source tree is not on this machine (looked under ${dir}/gopath-*; set KATA1_SOURCE_TREE)`,
  };
}

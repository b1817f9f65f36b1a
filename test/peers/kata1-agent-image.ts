// The real Kata 1.x agent (`kata-agent`, a static binary) and the variant of our guest image that
// runs it as PID 1 instead of our guest agent (guest/build.sh with GUEST_EXEC_AGENT, cached by
// its inputs under .../kata-sandbox-operator/guest-exec-agent/). Not a test file itself.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '../..');

function cacheDir(): string {
  return (
    process.env['CACHE_DIR'] ??
    path.join(
      process.env['XDG_CACHE_HOME'] ?? path.join(homedir(), '.cache'),
      'kata-sandbox-operator',
    )
  );
}

/**
 * The 1.x agent binary: $KATA1_AGENT_BINARY, else the peers' cache (peers/bin/kata-agent).
 * Throws naming both places when there is none.
 */
export function kata1AgentBinary(): string {
  const wanted = process.env['KATA1_AGENT_BINARY'] ?? path.join(cacheDir(), 'peers/bin/kata-agent');
  if (!existsSync(wanted)) {
    throw new Error(
      `no Kata 1.x agent binary at ${wanted}: build kata-agent (github.com/kata-containers/agent, ` +
        'static) there or point KATA1_AGENT_BINARY at one',
    );
  }
  return wanted;
}

/**
 * Builds (or finds cached) the variant image around `agent`; returns its directory. `repo`: the
 * checkout whose guest/build.sh to run (a bundled bench passes its working directory).
 */
export function kata1GuestImage(agent: string, repo = REPO): string {
  const out = execFileSync('bash', [path.join(repo, 'guest/build.sh')], {
    cwd: repo,
    env: { ...process.env, GUEST_EXEC_AGENT: agent },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 15 * 60_000,
  });
  return out.trim().split('\n').pop()!;
}

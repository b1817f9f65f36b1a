// The real Kata 1.x agent (`kata-agent`, a static binary) and the variant of our guest image that
// runs it as PID 1 instead of our guest agent (guest/build.sh with GUEST_EXEC_AGENT: it packages a
// given binary, never builds one; cached by its inputs under
// .../kata-sandbox-operator/guest-exec-agent/). Not a test file itself.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '../..');

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

// Where `make host-fs` put the kata-host-fs helper: KATA_HOST_FS_BINARY (the Makefile exports
// it), else the cache path hack/host-fs.sh builds into. Every node agent the tests, the demo and
// the benchmarks start gets it as --host-fs-binary.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const HOST_FS_BINARY_ENV = 'KATA_HOST_FS_BINARY';

/** `${XDG_CACHE_HOME:-~/.cache}/kata-sandbox-operator/bin/kata-host-fs`, unless the env says. */
export function hostFsBinaryPath(
  env: Readonly<Record<string, string | undefined>> = process.env,
  homeDir: string = os.homedir(),
): string {
  const fromEnv = env[HOST_FS_BINARY_ENV];
  if (fromEnv) return path.resolve(fromEnv);
  const xdg = env['XDG_CACHE_HOME'];
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(homeDir, '.cache');
  return path.join(base, 'kata-sandbox-operator', 'bin', 'kata-host-fs');
}

/** The built helper; throws saying how to build it when it is missing. */
export function builtHostFsBinary(): string {
  const p = hostFsBinaryPath();
  if (!existsSync(p)) {
    throw new Error(`kata-host-fs is not built: ${p} is missing (run \`make host-fs\`)`);
  }
  return p;
}

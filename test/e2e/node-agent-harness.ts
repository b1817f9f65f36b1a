// Runs the real kata-node-agent (bundled from src/ with esbuild) as a child process with the
// ServiceAccount identity and RBAC from deploy/, against the test control plane; and prepares a
// busybox rootfs for its sandboxes.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, serviceAccountKubeConfigPath } from '../integration/cluster.js';
import { builtHostFsBinary } from '../integration/host-fs-binary.js';
import {
  bundleEntry,
  kubectl,
  spawnComponent,
  type RunningProcess,
} from '../integration/controller-harness.js';

export async function installNodeAgentRbac(): Promise<void> {
  await kubectl([
    'apply',
    '--server-side',
    '-f',
    path.join(REPO_ROOT, 'deploy/rbac/node-agent.yaml'),
  ]);
}

export interface NodeAgentDirs {
  stateDir: string;
  runDir: string;
  logDir: string;
  roots: string[];
}

export type RunningNodeAgent = RunningProcess;

export async function startNodeAgent(
  nodeName: string,
  dirs: NodeAgentDirs,
  logFile: string,
  extraArgs: readonly string[] = [],
): Promise<RunningNodeAgent> {
  const bundle = await bundleEntry('src/node-agent/main.ts', 'kata-node-agent');
  const kubeconfig = await serviceAccountKubeConfigPath('kata-system', 'kata-node-agent');
  return spawnComponent(
    bundle,
    [
      '--kubeconfig',
      kubeconfig,
      '--node-name',
      nodeName,
      '--metrics-port',
      '0',
      '--state-dir',
      dirs.stateDir,
      '--run-dir',
      dirs.runDir,
      '--log-dir',
      dirs.logDir,
      '--allowed-host-path-roots',
      dirs.roots.join(','),
      '--default-accelerator',
      'auto',
      '--host-fs-binary',
      builtHostFsBinary(),
      ...extraArgs,
    ],
    logFile,
  );
}

/** A minimal root filesystem: static busybox and its applets, and the usual mount points. */
export function makeBusyboxRootfs(dir: string, extraDirs: string[] = []): void {
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc', ...extraDirs]) {
    mkdirSync(path.join(dir, d), { recursive: true });
  }
  copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'));
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', path.join(dir, 'bin', a));
  writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\n');
}

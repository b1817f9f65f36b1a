// kata-controller and kata-node-agent on this machine, as processes with their own ServiceAccount
// identities — used by `make demo` (hack/demo.ts) and bench/sandbox-create.ts.
//
// Identity: a TokenRequest token per ServiceAccount (`kubectl create token`, an hour long) in a
// file that a kubeconfig points at; the token is renewed at 80 % of its life, as kubelet renews a
// Pod's projected token, and @kubernetes/client-node re-reads the file every minute. So the API
// server authenticates the components exactly as it would in the cluster (the ServiceAccount must
// exist; deploy/rbac/ decides what they may do).
//
// Processes: each component runs detached (its own process group), so a Ctrl-C at the terminal
// reaches only the demo, which then stops them in order — the node agent must outlive the sample's
// deletion to stop its VM and drop the finalizer.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { newKubeConfig } from '../src/kube/shared-agent.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const SYSTEM_NAMESPACE = 'kata-system';

export interface ExecError extends Error {
  stdout?: string;
  stderr?: string;
}

/**
 * Runs `file args` (never through a shell) in a process group of its own, so a Ctrl-C at the
 * terminal does not cut it short (a cleanup step must finish); killed after `timeoutMs`.
 * Resolves to stdout; rejects with stdout and stderr attached.
 */
export function exec(file: string, args: readonly string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) return resolve(stdout);
      const how = timedOut
        ? `timed out after ${timeoutMs} ms`
        : signal
          ? `signal ${signal}`
          : `exit code ${code}`;
      const e: ExecError = new Error(`${file} ${args.join(' ')}: ${how}`);
      e.stdout = stdout;
      e.stderr = stderr;
      reject(e);
    });
  });
}

/** Bundles a component's entry (e.g. src/node-agent/main.ts) into `outDir/<name>.mjs`. */
export async function bundleComponent(
  repoRoot: string,
  entry: string,
  name: string,
  outDir: string,
): Promise<string> {
  mkdirSync(outDir, { recursive: true });
  const outfile = path.join(outDir, `${name}.mjs`);
  await build({
    entryPoints: [path.join(repoRoot, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    banner: {
      js: "import{createRequire}from'module';const require=createRequire(import.meta.url);",
    },
    logLevel: 'error',
  });
  return outfile;
}

export interface Identity {
  serviceAccount: string;
  kubeconfig: string;
  /** Stops renewing the token. */
  close(): void;
}

/**
 * A kubeconfig for ServiceAccount kata-system/<sa>: the admin kubeconfig's cluster (server, CA)
 * and a TokenRequest token in `<dir>/<sa>.token`, renewed in the background.
 */
export async function serviceAccountIdentity(
  adminKubeconfig: string,
  sa: string,
  dir: string,
  ttlSeconds = 3600,
): Promise<Identity> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tokenFile = path.join(dir, `${sa}.token`);
  const renew = async (): Promise<void> => {
    const stdout = await exec(
      'kubectl',
      [
        ...['--kubeconfig', adminKubeconfig, '-n', SYSTEM_NAMESPACE],
        ...['create', 'token', sa, `--duration=${ttlSeconds}s`],
      ],
      30_000,
    );
    const token = stdout.trim();
    if (!/^[\w.-]+$/.test(token)) throw new Error(`kubectl create token ${sa}: no token in output`);
    const tmp = `${tokenFile}.tmp`;
    writeFileSync(tmp, token, { mode: 0o600 });
    renameSync(tmp, tokenFile);
  };
  await renew();

  const admin = newKubeConfig();
  admin.loadFromFile(adminKubeconfig);
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error(`${adminKubeconfig}: no current cluster`);
  const kc = newKubeConfig();
  kc.loadFromOptions({
    clusters: [cluster],
    users: [{ name: sa, authProvider: { name: 'tokenFile', config: { tokenFile } } }],
    contexts: [{ name: sa, cluster: cluster.name, user: sa }],
    currentContext: sa,
  });
  const kubeconfig = path.join(dir, `${sa}.kubeconfig`);
  writeFileSync(kubeconfig, kc.exportConfig(), { mode: 0o600 });

  const timer = setInterval(
    () =>
      void renew().catch((err: unknown) =>
        process.stderr.write(`renewing the ${sa} token failed: ${String(err)}\n`),
      ),
    ttlSeconds * 800,
  );
  timer.unref();
  return { serviceAccount: sa, kubeconfig, close: () => clearInterval(timer) };
}

export interface Component {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** The port the component logged for /metrics; fails early if the process exits first. */
  metricsPort(timeoutMs?: number): Promise<number>;
  /** Resolves once GET /readyz answers 200. */
  waitReady(port: number, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts `node <bundle> <args>` detached, stdout and stderr into `logFile`. */
export function startComponent(
  name: string,
  bundle: string,
  args: readonly string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): Component {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [bundle, ...args], {
    stdio: ['ignore', fd, fd],
    detached: true,
    env: { LOG_LEVEL: 'debug', ...env },
  });
  closeSync(fd);
  let exitText = '';
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exitText = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    }),
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  const died = () => new Error(`${name} exited (${exitText}); see ${logFile}`);

  return {
    name,
    child,
    logFile,
    async metricsPort(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        let text = '';
        try {
          text = readFileSync(logFile, 'utf8');
        } catch {
          // not written yet
        }
        for (const line of text.split('\n')) {
          if (!line.includes('serving /metrics')) continue;
          const port = (JSON.parse(line) as { port?: unknown }).port;
          if (typeof port === 'number' && port > 0) return port;
        }
        if (!running()) throw died();
        await sleep(200);
      }
      throw new Error(`${name}: no "serving /metrics" line within ${timeoutMs} ms; see ${logFile}`);
    },
    async waitReady(port, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      let last = '';
      while (Date.now() < deadline) {
        if (!running()) throw died();
        try {
          const res = await fetch(`http://127.0.0.1:${port}/readyz`, {
            signal: AbortSignal.timeout(5_000),
          });
          if (res.ok) return;
          last = `HTTP ${res.status}`;
        } catch (err) {
          last = String(err);
        }
        await sleep(300);
      }
      throw new Error(
        `${name}: /readyz not ready within ${timeoutMs} ms (${last}); see ${logFile}`,
      );
    },
    async stop(graceMs = 20_000) {
      if (running()) child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (running()) child.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

// A real OCI registry for image tests and benchmarks: Debian's docker-registry on 127.0.0.1 (with
// htpasswd auth when asked), images built with umoci from this machine's busybox-static, pushed
// with skopeo. No network beyond loopback.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

async function run(cmd: string, args: string[], timeout = 60_000): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, { timeout, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`);
  }
}

export interface Credentials {
  username: string;
  password: string;
}

export interface TestRegistry {
  /** 127.0.0.1:<port> */
  host: string;
  dir: string;
  auth?: Credentials;
  /** Request lines (`GET /v2/... HTTP/1.1`) served so far; only with `accessLog`. */
  requests(): string[];
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

function probe(host: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(`http://${host}/v2/`, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.setTimeout(1000, () => req.destroy());
  });
}

/** Starts docker-registry on a free loopback port; with `auth`, behind htpasswd (bcrypt). */
export async function startRegistry(
  opts: { auth?: Credentials; accessLog?: boolean } = {},
): Promise<TestRegistry> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kata-registry-'));
  let lastErr = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const lines = [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      `    disabled: ${opts.accessLog ? 'false' : 'true'}`,
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: ${host}`,
    ];
    if (opts.auth) {
      const entry = await run('htpasswd', ['-Bbn', opts.auth.username, opts.auth.password]);
      await writeFile(path.join(dir, 'htpasswd'), entry.trim() + '\n', { mode: 0o600 });
      lines.push(
        'auth:',
        '  htpasswd:',
        '    realm: kata-test',
        `    path: ${path.join(dir, 'htpasswd')}`,
      );
    }
    const config = path.join(dir, 'config.yml');
    await writeFile(config, `${lines.join('\n')}\n`);
    const child: ChildProcess = spawn('docker-registry', ['serve', config], {
      stdio: ['ignore', opts.accessLog ? 'pipe' : 'ignore', 'pipe'],
    });
    // The access log (stdout, combined format): the registry's own record of what was fetched.
    const requests: string[] = [];
    let partial = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        const m = /"([A-Z]+ \S+ HTTP\/[0-9.]+)"/.exec(l);
        if (m?.[1]) requests.push(m[1]);
      }
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 65536) stderr += d;
    });
    let exited = false;
    child.once('exit', () => (exited = true));
    const deadline = Date.now() + 15_000;
    while (!exited && Date.now() < deadline) {
      const code = await probe(host);
      if (code === 200 || code === 401) {
        return {
          host,
          dir,
          ...(opts.auth && { auth: opts.auth }),
          requests: () => [...requests],
          stop: async () => {
            if (!exited) {
              const gone = new Promise((r) => child.once('exit', r));
              child.kill('SIGTERM');
              let timer: NodeJS.Timeout | undefined;
              await Promise.race([gone, new Promise((r) => (timer = setTimeout(r, 5000)))]);
              clearTimeout(timer);
              if (!exited) child.kill('SIGKILL');
            }
            await rm(dir, { recursive: true, force: true });
          },
        };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!exited) child.kill('SIGKILL');
    lastErr = stderr.trim().split('\n').slice(-3).join('; ');
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`docker-registry did not start: ${lastErr}`);
}

export interface ImageSpec {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  /** Extra files (path inside the image → content). */
  files?: Record<string, string>;
}

const BUSYBOX = '/bin/busybox';
const APPLETS = ['sh', 'echo', 'cat', 'ls', 'env', 'pwd', 'id', 'sleep', 'true', 'false', 'touch'];

/**
 * Builds an image with umoci in a fresh OCI layout: busybox-static and its applets in /bin, a
 * passwd/group with root, app (1001:1002, also in wheel 10) and nobody, plus `files`; then sets
 * the config. Returns the layout's `dir:tag`.
 */
export async function buildBusyboxImage(workDir: string, spec: ImageSpec): Promise<string> {
  const layout = await mkdtemp(path.join(workDir, 'layout-'));
  await rm(layout, { recursive: true, force: true });
  await run('umoci', ['init', '--layout', layout]);
  await run('umoci', ['new', '--image', `${layout}:base`]);
  const bundle = `${layout}-bundle`;
  await run('umoci', ['unpack', '--image', `${layout}:base`, bundle]);
  const rootfs = path.join(bundle, 'rootfs');
  await mkdir(path.join(rootfs, 'bin'), { recursive: true });
  await mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await mkdir(path.join(rootfs, 'tmp'), { recursive: true, mode: 0o1777 });
  await copyFile(BUSYBOX, path.join(rootfs, 'bin/busybox'));
  await chmod(path.join(rootfs, 'bin/busybox'), 0o755);
  for (const a of APPLETS) await symlink('busybox', path.join(rootfs, 'bin', a));
  await writeFile(
    path.join(rootfs, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n',
  );
  await writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\nwheel:x:10:app\napp:x:1002:\n');
  for (const [p, content] of Object.entries(spec.files ?? {})) {
    const target = path.join(rootfs, p);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, content);
  }
  await run('umoci', ['repack', '--image', `${layout}:img`, bundle]);
  await rm(bundle, { recursive: true, force: true });
  const args = ['config', '--image', `${layout}:img`];
  if (spec.entrypoint) for (const e of spec.entrypoint) args.push('--config.entrypoint', e);
  if (spec.cmd) for (const c of spec.cmd) args.push('--config.cmd', c);
  for (const e of spec.env ?? []) args.push('--config.env', e);
  if (spec.workingDir) args.push('--config.workingdir', spec.workingDir);
  if (spec.user) args.push('--config.user', spec.user);
  await run('umoci', args);
  return `${layout}:img`;
}

/** Pushes a layout image to `<registry>/<repoTag>`; returns the manifest digest. */
export async function pushImage(
  layoutImage: string,
  registry: TestRegistry,
  repoTag: string,
): Promise<string> {
  const digestFile = path.join(registry.dir, `digest-${process.hrtime.bigint()}`);
  await run('skopeo', [
    'copy',
    '--quiet',
    '--dest-tls-verify=false',
    ...(registry.auth
      ? ['--dest-creds', `${registry.auth.username}:${registry.auth.password}`]
      : ['--dest-no-creds']),
    '--digestfile',
    digestFile,
    `oci:${layoutImage}`,
    `docker://${registry.host}/${repoTag}`,
  ]);
  return (await readFile(digestFile, 'utf8')).trim();
}

/** A kubernetes.io/dockerconfigjson Secret's parsed `.dockerconfigjson` for one registry. */
export function dockerConfigJson(host: string, creds: Credentials): unknown {
  return {
    auths: {
      [host]: {
        username: creds.username,
        password: creds.password,
        auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64'),
      },
    },
  };
}

/** A plain HTTP proxy in front of a test registry that counts, or holds, the requests it gets. */
export interface RegistryProxy {
  /** 127.0.0.1:<port>, to use as the registry host in image references. */
  host: string;
  /** Requests received (held ones included). */
  requests: number;
  /** While true, requests are received but never answered: a client stays mid-pull. */
  hold: boolean;
  close(): Promise<void>;
}

export async function proxyRegistry(target: string): Promise<RegistryProxy> {
  const [targetHost, targetPort] = target.split(':');
  const server = http.createServer((req, res) => {
    proxy.requests++;
    if (proxy.hold) return;
    const upstream = http.request(
      {
        host: targetHost,
        port: Number(targetPort),
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address() as net.AddressInfo;
  const proxy: RegistryProxy = {
    host: `127.0.0.1:${addr.port}`,
    requests: 0,
    hold: false,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return proxy;
}

// Prometheus' own tools for the metrics tests: promtool's lint of an exposition, and a real
// Prometheus (Debian `prometheus`) on 127.0.0.1 with a throw-away config and data dir.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { createServer } from 'node:net';
import path from 'node:path';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function httpGet(
  url: string,
  timeoutMs = 5_000,
): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text() };
}

export interface HttpsGetOptions {
  token?: string;
  /** PEM to verify the server with; default: no verification (a self-signed certificate). */
  ca?: string;
  /** Reuse connections (as Prometheus does); default: a fresh TLS connection each request. */
  agent?: Agent;
  timeoutMs?: number;
}

/** GET over HTTPS with an optional bearer token. */
export function httpsGet(
  url: string,
  opts: HttpsGetOptions = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        ...(opts.ca ? { ca: opts.ca } : { rejectUnauthorized: false }),
        agent: opts.agent ?? false,
        timeout: opts.timeoutMs ?? 5_000,
        headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {},
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

export const metricsOf = (port: number): Promise<string> =>
  httpGet(`http://127.0.0.1:${port}/metrics`).then((r) => {
    if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
    return r.body;
  });

/** `promtool check metrics` reads the exposition on stdin; resolves to its exit code and output. */
export function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'promtool',
      ['check', 'metrics'],
      { timeout: 30_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, output: `${stdout}${stderr}` });
      },
    );
    child.stdin?.end(text);
  });
}

/** promtool's problem lines (every one is a problem of ours). */
export function ownProblems(output: string): string[] {
  return output.split('\n').filter((l) => l.trim() !== '');
}

/** The value of one sample line `name{labels} value` (labels as written), or undefined. */
export function sampleValue(text: string, name: string, labels = ''): number | undefined {
  const want = labels ? `${name}{${labels}}` : name;
  for (const line of text.split('\n')) {
    const i = line.lastIndexOf(' ');
    if (i > 0 && line.slice(0, i) === want) return Number(line.slice(i + 1));
  }
  return undefined;
}

export interface PromVector {
  metric: Record<string, string>;
  value: [number, string];
}

export interface RunningPrometheus {
  port: number;
  query(q: string): Promise<PromVector[]>;
  stop(): Promise<void>;
}

/** How Prometheus scrapes a job over HTTPS: a bearer token file, and the CA or no verification. */
export interface PrometheusHttps {
  tokenFile: string;
  /** PEM file to verify the targets with; absent: insecure_skip_verify. */
  caFile?: string;
}

/**
 * A Prometheus scraping each job's targets every second (`host:port`; a bare `port` means
 * 127.0.0.1), its data under `dir`; over HTTPS with a bearer token for jobs with `https`.
 */
export async function startPrometheus(
  dir: string,
  jobs: ({ job: string; labels?: Record<string, string>; https?: PrometheusHttps } & (
    { port: number } | { targets: string[] }
  ))[],
): Promise<RunningPrometheus> {
  const port = await freePort();
  mkdirSync(path.join(dir, 'data'), { recursive: true });
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s' },
    scrape_configs: jobs.map((j) => ({
      job_name: j.job,
      ...(j.https && {
        scheme: 'https',
        authorization: { type: 'Bearer', credentials_file: j.https.tokenFile },
        tls_config: j.https.caFile ? { ca_file: j.https.caFile } : { insecure_skip_verify: true },
      }),
      static_configs: [
        { targets: 'targets' in j ? j.targets : [`127.0.0.1:${j.port}`], labels: j.labels ?? {} },
      ],
    })),
  };
  // JSON is YAML: no YAML writer needed.
  writeFileSync(path.join(dir, 'prometheus.yml'), JSON.stringify(config, null, 1));
  const out = openSync(path.join(dir, 'prometheus.log'), 'a');
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
    ],
    { stdio: ['ignore', out, out] },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    port,
    async query(q) {
      const r = await httpGet(
        `http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`,
      );
      const body = JSON.parse(r.body) as { status: string; data?: { result: PromVector[] } };
      if (body.status !== 'success') throw new Error(`query ${q}: ${r.body}`);
      return body.data?.result ?? [];
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

// exec, attach's stdin path and log follow through the whole chain, on a real VM: a WebSocket
// client (v5.channel.k8s.io, an edit user's client certificate) → kube-apiserver's aggregator →
// kata-api (process) → the node agent's stream endpoint (process) → the guest agent's process
// calls in the QEMU guest. Prints: exec round trip of `true` (p50/p99; also through
// `kubectl kata exec`, which starts kubectl proxy each time), stdout and stdin throughput of one
// exec, and log follow latency (a line written to an exec's stdin, which passes it through a FIFO
// to the container, which writes it to its stdout → that line at a `log?follow=true` client: the
// guest's write, the node agent's ReadStdout pump, its log file and the follow's poll). QEMU
// CPU-seconds beside the wall times (TCG wall time follows host load). Ends with one line
// `bench-result {json}`.
// Usage: node kata-api-exec.mjs [EXEC_RUNS=30] [FOLLOW_SAMPLES=30] [THROUGHPUT_MIB=16]
// (from the repository root)
import { newKubeConfig } from '../src/kube/shared-agent.js';
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { CHANNEL, exitCodeOf, frame } from '../src/subresources/stream-protocol.js';
import { kubectl } from '../test/integration/controller-harness.js';
import {
  unregisterApiService,
  userKubeConfig,
  serveKataApi,
} from '../test/integration/kata-api-harness.js';
import { makeBusyboxRootfs } from '../test/e2e/node-agent-harness.js';
import { phase } from '../test/e2e/sandbox-api.js';
import { REPO, startBenchStack } from './bench-stack.js';
import { cpuSeconds } from './proc-stats.js';

const EXEC_RUNS = Number(process.argv[2] ?? 30);
const FOLLOW_SAMPLES = Number(process.argv[3] ?? 30);
const THROUGHPUT_MIB = Number(process.argv[4] ?? 16);
const SUB = '/apis/subresources.kata.sandbox.io/v1alpha1';
const MiB = 1024 * 1024;

const pct = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))] ?? NaN;
};
const f1 = (v: number) => v.toFixed(1);

interface Exec {
  ws: WebSocket;
  opened: Promise<void>;
  /** Resolves with the exit code and the bytes of stdout once the stream ends. */
  done: Promise<{ code: number; stdoutBytes: number; message?: string }>;
  onStdout(fn: (b: Buffer) => void): void;
}

async function main(): Promise<void> {
  const stack = await startBenchStack('kexec');
  try {
    const ns = stack.api.namespace;
    for (const f of ['deploy/rbac/kata-api.yaml', 'deploy/rbac/user-roles.yaml']) {
      await kubectl(['apply', '--server-side', '-f', path.join(REPO, f)]);
    }
    await kubectl([
      ...['-n', ns, 'create', 'rolebinding', 'bench-editor'],
      ...['--clusterrole=kata-sandbox-edit', '--user=kexec-bench'],
    ]);
    const userFile = await userKubeConfig('kexec-bench', 'kexec-bench');
    const api = await serveKataApi(stack.base);
    stack.onTeardown(() => unregisterApiService());
    stack.onTeardown(() => api.stop());
    const rootfs = path.join(stack.roots, 'busybox');
    makeBusyboxRootfs(rootfs);
    await stack.api.create('b', {
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'main',
          rootfs: { hostPath: { path: rootfs } },
          // What arrives in the FIFO goes to the container's own stdout (log follow latency):
          // an exec cannot write there itself, the container's stdio being sockets. The FIFO is
          // on tmpfs: 9p refuses mknod of one (ENXIO).
          command: [
            '/bin/sh',
            '-c',
            'mkfifo /dev/shm/lines || exit 1; echo up; while true; do while read l; do echo "$l"; done < /dev/shm/lines; done',
          ],
        },
      ],
    });
    const sb = await stack.api.waitFor('b', 'Running', phase('Running'), 600_000);
    const qemuPid = sb?.status?.vm?.pid ?? 0;
    const accelerator = sb?.status?.vm?.accelerator ?? '?';

    const kc = newKubeConfig();
    kc.loadFromFile(userFile);
    const server = kc.getCurrentCluster()?.server ?? '';
    const base = `${server.replace(/^http/, 'ws')}${SUB}/namespaces/${ns}/katasandboxes/b`;
    const tls: WebSocket.ClientOptions = {};
    await kc.applyToHTTPSOptions(tls);

    const exec = (command: string[], stdin = false): Exec => {
      const q = new URLSearchParams();
      for (const c of command) q.append('command', c);
      q.set('stdout', 'true');
      q.set('stderr', 'true');
      if (stdin) q.set('stdin', 'true');
      const ws = new WebSocket(`${base}/exec?${q}`, ['v5.channel.k8s.io'], tls);
      const listeners: ((b: Buffer) => void)[] = [];
      let bytes = 0;
      let status: unknown;
      ws.on('message', (m: Buffer) => {
        if (m[0] === CHANNEL.stdout) {
          bytes += m.length - 1;
          for (const l of listeners) l(m.subarray(1));
        } else if (m[0] === CHANNEL.error) status = JSON.parse(m.subarray(1).toString());
      });
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () =>
          ws.emit('error', new Error(`upgrade refused: ${res.statusCode} ${body}`)),
        );
      });
      const opened = new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      const done = new Promise<Awaited<Exec['done']>>((resolve, reject) => {
        ws.once('error', reject);
        ws.once('close', (code, reason) =>
          status === undefined
            ? reject(new Error(`closed without a status: ${code} ${reason.toString()}`))
            : resolve({ ...exitCodeOf(status), stdoutBytes: bytes }),
        );
      });
      // An exec nobody awaits (the follow phase's writer, one cut short by a signal) must not
      // end the process before the teardown has deleted what the bench created.
      opened.catch(() => {});
      done.catch(() => {});
      return { ws, opened, done, onStdout: (fn) => listeners.push(fn) };
    };

    // Exec round trip of `true`: connect, start, wait, status.
    await exec(['true']).done;
    const cpu0 = cpuSeconds(qemuPid);
    const rtt: number[] = [];
    for (let i = 0; i < EXEC_RUNS; i++) {
      const t0 = performance.now();
      const r = await exec(['true']).done;
      if (r.code !== 0) {
        const now = await stack.api.get('b');
        throw new Error(
          `true exited ${r.code} (${JSON.stringify(r)}); sandbox ${JSON.stringify(now?.status?.phase)} ${now?.status?.reason ?? ''} ${now?.status?.message ?? ''}`,
        );
      }
      rtt.push(performance.now() - t0);
    }
    const execCpu = cpuSeconds(qemuPid) - cpu0;

    // The same through the plugin (kubectl proxy started per call).
    const plugin: number[] = [];
    for (let i = 0; i < Math.min(5, EXEC_RUNS); i++) {
      const t0 = performance.now();
      const code = await new Promise<number | null>((resolve) =>
        spawn(path.join(REPO, 'bin/kubectl-kata'), [
          ...['--kubeconfig', userFile, '-n', ns, 'exec', 'ksb/b', '--', 'true'],
        ]).once('exit', resolve),
      );
      if (code !== 0) throw new Error(`kubectl kata exec true exited ${code}`);
      plugin.push(performance.now() - t0);
    }

    // stdout throughput: THROUGHPUT_MIB of zeros from the guest.
    const outMiBps: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const r = await exec(['head', '-c', String(THROUGHPUT_MIB * MiB), '/dev/zero']).done;
      if (r.stdoutBytes !== THROUGHPUT_MIB * MiB) throw new Error(`stdout: ${r.stdoutBytes} bytes`);
      outMiBps.push(THROUGHPUT_MIB / ((performance.now() - t0) / 1000));
    }

    // stdin throughput: THROUGHPUT_MIB into `wc -c`, sent as fast as the socket takes it.
    const inMiBps: number[] = [];
    const block = frame(CHANNEL.stdin, Buffer.alloc(64 * 1024, 0x61));
    for (let i = 0; i < 3; i++) {
      const e = exec(['wc', '-c'], true);
      let out = '';
      e.onStdout((b) => (out += b.toString()));
      await e.opened;
      const t0 = performance.now();
      for (let n = 0; n < THROUGHPUT_MIB * 16; n++) {
        await new Promise<void>((resolve, reject) =>
          e.ws.send(block, (err) => (err ? reject(err) : resolve())),
        );
        // Keep at most ~4 MiB in flight in the client's socket.
        while (e.ws.bufferedAmount > 4 * MiB) await new Promise((r) => setTimeout(r, 1));
      }
      e.ws.send(frame(CHANNEL.close, Buffer.from([CHANNEL.stdin])));
      await e.done;
      if (Number(out.trim()) !== THROUGHPUT_MIB * MiB)
        throw new Error(`stdin: wc says ${out.trim()}`);
      inMiBps.push(THROUGHPUT_MIB / ((performance.now() - t0) / 1000));
    }

    // Log follow latency: a line to an exec's stdin → the container's stdout → a log follower.
    const follower = spawn('kubectl', [
      ...['--kubeconfig', userFile, 'get', '--raw'],
      `${SUB}/namespaces/${ns}/katasandboxes/b/log?follow=true&tailLines=0`,
    ]);
    let followed = '';
    let wake: (() => void) | undefined;
    follower.stdout.on('data', (c: Buffer) => {
      followed += c.toString();
      wake?.();
    });
    const arrived = (line: string) =>
      new Promise<void>((resolve, reject) => {
        const late = setTimeout(() => {
          wake = undefined;
          reject(new Error(`${JSON.stringify(line)} not followed in 120 s; got ${followed}`));
        }, 120_000);
        const check = () => {
          if (followed.includes(line)) {
            clearTimeout(late);
            wake = undefined;
            resolve();
          }
        };
        wake = check;
        check();
      });
    // Line by line (sh's read): busybox cat passed the first line on and not the next ones.
    const writer = exec(['sh', '-c', 'while read l; do echo "$l"; done > /dev/shm/lines'], true);
    await writer.opened;
    const line = (s: string) => writer.ws.send(frame(CHANNEL.stdin, `${s}\n`));
    line('warm-up');
    await arrived('warm-up\n');
    const follow: number[] = [];
    for (let i = 0; i < FOLLOW_SAMPLES; i++) {
      const t0 = performance.now();
      line(`sample-${i}`);
      await arrived(`sample-${i}\n`).catch(async (err: Error) => {
        const log = await kubectl([
          ...['--kubeconfig', userFile, 'get', '--raw'],
          `${SUB}/namespaces/${ns}/katasandboxes/b/log?tailLines=5`,
        ]).catch((e: Error) => e.message);
        throw new Error(`${err.message}; the container's log ends: ${log}`);
      });
      follow.push(performance.now() - t0);
    }
    writer.ws.close();
    follower.kill();

    console.log(
      `accelerator ${accelerator}; exec round trip of true (WebSocket through the aggregator), ` +
        `${EXEC_RUNS} runs: p50 ${f1(pct(rtt, 0.5))} ms  p99 ${f1(pct(rtt, 0.99))} ms; ` +
        `QEMU CPU ${execCpu.toFixed(2)} s over them`,
    );
    console.log(
      `kubectl kata exec true (kubectl proxy started per call), ${plugin.length} runs: ` +
        `p50 ${f1(pct(plugin, 0.5))} ms`,
    );
    console.log(
      `exec stdout ${THROUGHPUT_MIB} MiB: median ${f1(pct(outMiBps, 0.5))} MiB/s; ` +
        `stdin ${THROUGHPUT_MIB} MiB: median ${f1(pct(inMiBps, 0.5))} MiB/s`,
    );
    console.log(
      `log follow latency (line to an exec's stdin → container stdout → follower), ` +
        `${FOLLOW_SAMPLES} samples: p50 ${f1(pct(follow, 0.5))} ms  p99 ${f1(pct(follow, 0.99))} ms`,
    );
    const load = loadavg()[0] ?? NaN;
    console.log(`host load average (1 min) at the end: ${load.toFixed(2)}`);
    console.log(
      `bench-result ${JSON.stringify({
        accelerator,
        load,
        execTrueMs: { p50: pct(rtt, 0.5), p99: pct(rtt, 0.99), qemuCpuSeconds: execCpu },
        pluginExecTrueMs: { p50: pct(plugin, 0.5) },
        stdoutMiBps: pct(outMiBps, 0.5),
        stdinMiBps: pct(inMiBps, 0.5),
        followLatencyMs: { p50: pct(follow, 0.5), p99: pct(follow, 0.99) },
      })}`,
    );
  } finally {
    await stack.teardown();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

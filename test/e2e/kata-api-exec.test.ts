// `kubectl kata exec` and `attach` against a real VM, through the whole chain: the plugin (kubectl
// proxy on a private socket) → kube-apiserver's aggregator → kata-api → the node agent's stream
// endpoint → the guest agent's ExecProcess/WriteStdin/ReadStdout/WaitProcess/SignalProcess. A
// user bound to kata-sandbox-edit runs commands, pipes 10 MiB through one, gets the command's
// exit code, and a client killed mid-stream leaves no process in the guest and no stream on the
// node.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { eventually } from '../integration/controller-harness.js';
import { runProgram } from '../integration/kata-api-harness.js';
import { KUBECTL_KATA, startKataApiStack, type KataApiStack } from './kata-api-stack.js';
import { phase, waitForFile } from './sandbox-api.js';

jest.setTimeout(900_000);

let stack: KataApiStack | undefined;
let base: string;
let editor: string;

const kata = (args: string[], timeoutMs = 120_000) =>
  runProgram(KUBECTL_KATA, ['--kubeconfig', editor, ...args], process.env, timeoutMs);

/** The node agent's open streams, from its /metrics. */
async function openStreams(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${stack?.metricsPort}/metrics`)).text();
  const m = /^kata_node_open_streams (\S+)$/m.exec(text);
  if (!m) throw new Error('kata_node_open_streams not in /metrics');
  return Number(m[1]);
}

beforeAll(async () => {
  stack = await startKataApiStack('kexec');
  base = stack.base;
  editor = await stack.user('kexec-e2e-editor', 'kata-sandbox-edit');
  await stack.sandboxes.create('shell', {
    terminationGracePeriodSeconds: 1,
    containers: [
      {
        name: 'main',
        rootfs: { hostPath: { path: stack.rootfs } },
        // Prints what an exec leaves in /tmp/say: output of the container's own process (attach).
        command: [
          '/bin/sh',
          '-c',
          'echo ready; while true; do if [ -f /tmp/say ]; then cat /tmp/say; rm /tmp/say; fi; sleep 1; done',
        ],
      },
    ],
  });
  await stack.sandboxes.waitFor('shell', 'Running', phase('Running'), 600_000);
}, 30 * 60_000);

afterAll(async () => {
  await stack?.stop(['shell']);
}, 300_000);

describe('kubectl kata exec on a real VM', () => {
  it("prints the command's output and exits with its exit code", async () => {
    const r = await kata(['exec', 'ksb/shell', '--', 'sh', '-c', 'echo $((6*7)); exit 3']);
    expect(r).toEqual({ code: 3, stdout: '42\n', stderr: 'command terminated with exit code 3\n' });
    expect(await kata(['exec', 'shell', '-c', 'main', '--', 'true'])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
  });

  it('-i streams 10 MiB of stdin through sha256sum and the hash matches', async () => {
    const data = randomBytes(10 << 20);
    const file = path.join(base, 'stdin.bin');
    writeFileSync(file, data);
    const fd = openSync(file, 'r');
    const child = spawn(
      KUBECTL_KATA,
      ['--kubeconfig', editor, 'exec', '-i', 'ksb/shell', '--', 'sha256sum'],
      {
        stdio: [fd, 'pipe', 'pipe'],
      },
    );
    closeSync(fd);
    let out = '';
    let err = '';
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect({ code, err }).toEqual({ code: 0, err: '' });
    expect(out.split(/\s+/)[0]).toBe(createHash('sha256').update(data).digest('hex'));
  }, 300_000);

  it('a client killed mid-stream leaves no process in the guest and no open stream on the node', async () => {
    expect(await openStreams()).toBe(0);
    // Its own process group, killed whole as a terminal's hangup does (plugin and kubectl proxy).
    const child = spawn(
      KUBECTL_KATA,
      [
        '--kubeconfig',
        editor,
        'exec',
        '-i',
        'ksb/shell',
        '--',
        'sh',
        '-c',
        'echo started; exec sleep 4242',
      ],
      { detached: true, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await eventually('started', async () => (out.includes('started') ? true : undefined), 120_000);
    const ps = async () => (await kata(['exec', 'ksb/shell', '--', 'ps'])).stdout;
    expect(await ps()).toMatch(/sleep 4242/);
    expect(await openStreams()).toBe(1);
    const pid = child.pid;
    if (!pid) throw new Error('kubectl kata did not start');
    process.kill(-pid, 'SIGKILL');
    await eventually(
      'no sleep 4242 in the guest',
      async () => ((await ps()).includes('sleep 4242') ? undefined : true),
      60_000,
    );
    await eventually(
      'no open stream',
      async () => ((await openStreams()) === 0 ? true : undefined),
      60_000,
    );
  });

  it('attach shows what the container writes from then on; -c names a missing container', async () => {
    // The container's own output: its loop prints what an exec leaves in /tmp/say.
    const child = spawn(KUBECTL_KATA, ['--kubeconfig', editor, 'attach', 'ksb/shell'], {
      detached: true,
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await eventually(
      'attached',
      async () => ((await openStreams()) === 1 ? true : undefined),
      60_000,
    );
    expect(
      (await kata(['exec', 'ksb/shell', '--', 'sh', '-c', 'echo hello-attach > /tmp/say'])).code,
    ).toBe(0);
    await eventually(
      'the line',
      async () => (out.includes('hello-attach') ? true : undefined),
      60_000,
    );
    process.kill(-(child.pid ?? 0), 'SIGKILL');
    await eventually(
      'no open stream',
      async () => ((await openStreams()) === 0 ? true : undefined),
      60_000,
    );
    const bad = await kata(['exec', 'ksb/shell', '-c', 'nope', '--', 'true']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/container nope is not valid/);
  });

  it('-it runs an interactive shell on a pseudo-terminal and stty size sees a resize', async () => {
    // script(1) gives the plugin a pseudo-terminal; the shell inside writes its tty's path first.
    const ttyFile = path.join(base, 'tty');
    const cmd = `tty > ${ttyFile}; exec ${KUBECTL_KATA} --kubeconfig ${editor} exec -it ksb/shell -- sh`;
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const pts = (await waitForFile(ttyFile, /^\/dev\/pts\/\d+/)).trim();
    await runProgram('stty', ['-F', pts, 'rows', '24', 'cols', '80']);
    child.stdin.write('stty size\r');
    await eventually('24 80', async () => (out.includes('24 80') ? true : undefined), 60_000);
    // The kernel sends SIGWINCH to the plugin; it sends the new size (channel 4).
    await runProgram('stty', ['-F', pts, 'rows', '33', 'cols', '111']);
    await new Promise((r) => setTimeout(r, 1_000));
    child.stdin.write('stty size\r');
    await eventually('33 111', async () => (out.includes('33 111') ? true : undefined), 60_000);
    child.stdin.write('exit 5\r');
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(5);
    expect(readFileSync(ttyFile, 'utf8')).toMatch(/pts/);
  });

  it('a long run of execs leaves the sandbox Running: its QEMU stays inside its memory limit', async () => {
    // Each exec runs code the guest had not run before; with QEMU's default (1 GiB) TCG
    // translation cache the VM's cgroup limit was reached and QEMU OOM-killed after ~30 of them.
    for (let i = 0; i < 45; i++) {
      const r = await kata(['exec', 'ksb/shell', '--', 'sh', '-c', `echo ${i}`]);
      expect(r).toEqual({ code: 0, stdout: `${i}\n`, stderr: '' });
    }
    const sb = await stack?.sandboxes.get('shell');
    expect({ phase: sb?.status?.phase, reason: sb?.status?.reason ?? '' }).toEqual({
      phase: 'Running',
      reason: '',
    });
  }, 600_000);
});

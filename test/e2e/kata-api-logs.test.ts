// `kubectl kata logs` against a real VM: the real control plane with its aggregation layer, the
// controller, the node agent and kata-api as processes, a QEMU guest running the container. A
// user bound to kata-sandbox-view follows a container's output while it is written, sees the
// stream end when the container exits, and reads the run before a restart with --previous.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import { eventually } from '../integration/controller-harness.js';
import { runProgram } from '../integration/kata-api-harness.js';
import { KUBECTL_KATA, startKataApiStack, type KataApiStack } from './kata-api-stack.js';
import { phase, type SandboxApi } from './sandbox-api.js';

jest.setTimeout(900_000);

let stack: KataApiStack | undefined;
let rootfs: string;
let sandboxes: SandboxApi;
let viewer: string;
let editor: string;

beforeAll(async () => {
  stack = await startKataApiStack('kapi');
  ({ rootfs, sandboxes } = stack);
  viewer = await stack.user('kapi-e2e-viewer', 'kata-sandbox-view');
  editor = await stack.user('kapi-e2e-editor', 'kata-sandbox-edit');
}, 30 * 60_000);

afterAll(async () => {
  await stack?.stop(['counter']);
}, 300_000);

describe('kubectl kata logs on a real VM', () => {
  it('-f follows the output as it is written and ends when the container ends; -p reads that run after the restart; console shows the guest init lines (edit only)', async () => {
    // Each run: a first line unique to the run, then a line every 3 s, then a failure (restart).
    await sandboxes.create('counter', {
      restartPolicy: 'OnFailure',
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'main',
          rootfs: { hostPath: { path: rootfs } },
          command: [
            '/bin/sh',
            '-c',
            'echo "run $(cat /proc/uptime)"; for i in 1 2 3 4; do sleep 3; echo "line $i"; done; exit 1',
          ],
        },
      ],
    });
    await sandboxes.waitFor('counter', 'Running', phase('Running'), 600_000);

    const child = spawn(KUBECTL_KATA, ['--kubeconfig', viewer, 'logs', '-f', 'ksb/counter']);
    let out = '';
    let stderr = '';
    let partial: string | undefined;
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (!out.includes('line 4')) partial ??= out;
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const lines = out.trimEnd().split('\n');
    expect(lines.slice(1)).toEqual(['line 1', 'line 2', 'line 3', 'line 4']);
    expect(lines[0]).toMatch(/^run \d/);
    // Output arrived before the run had written all of it: it was followed, not read at the end.
    expect(partial).toBeDefined();
    expect(partial).not.toContain('line 4');

    await sandboxes.waitFor(
      'counter',
      'a restart',
      (sb) => (sb?.status?.containers?.[0]?.restartCount ?? 0) >= 1,
      300_000,
    );
    const previous = await runProgram(KUBECTL_KATA, [
      '--kubeconfig',
      viewer,
      'logs',
      '-p',
      'ksb/counter',
    ]);
    expect(previous).toMatchObject({ code: 0, stdout: out });
    const current = await eventually(
      'the second run writing',
      async () => {
        const r = await runProgram(KUBECTL_KATA, [
          '--kubeconfig',
          viewer,
          'logs',
          'ksb/counter',
          '--tail',
          '5',
        ]);
        return r.code === 0 && r.stdout.startsWith('run ') ? r.stdout : undefined;
      },
      120_000,
    );
    expect(current.split('\n')[0]).not.toBe(lines[0]);

    // The VM's console: the guest's init lines, for edit only.
    const consoleOut = await runProgram(KUBECTL_KATA, [
      '--kubeconfig',
      editor,
      'console',
      'ksb/counter',
    ]);
    expect(consoleOut.code).toBe(0);
    expect(consoleOut.stdout).toMatch(/kata-guest-init: /);
    expect(
      (await runProgram(KUBECTL_KATA, ['--kubeconfig', viewer, 'console', 'ksb/counter'])).code,
    ).toBe(1);
  });
});

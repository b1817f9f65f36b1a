// bootVm with a stand-in "QEMU" (a shell script that writes to the console log named in its argv)
// and fake agent handles: readiness, early exit, deadline, abort, and the console tail in errors.
import { afterAll, describe, expect, it, jest } from '@jest/globals';
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  BootError,
  bootVm,
  waitForConsoleLine,
  type BootOptions,
  type OpenAgent,
} from '../../../src/node-agent/hypervisor/boot.js';
import type { AgentConnection } from '../../../src/agent/agent-connection.js';
import type { QemuProcess } from '../../../src/node-agent/hypervisor/qemu-process.js';

const root = mkdtempSync(path.join(tmpdir(), 'boot-unit-'));
const running: QemuProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((p) => p.stop({ powerdownGraceMs: 0, qmpTimeoutMs: 100 })));
  rmSync(root, { recursive: true, force: true });
});

function fakeQemu(name: string, body: string): string {
  const file = path.join(root, `${name}.sh`);
  writeFileSync(
    file,
    `#!/bin/sh
for a in "$@"; do case "$a" in file,id=con0,path=*) con="\${a#file,id=con0,path=}";; esac; done
for i in $(seq 1 25); do echo "boot line $i" >>"$con"; done
${body}
`,
  );
  chmodSync(file, 0o755);
  return file;
}

let n = 0;
function options(qemuBinary: string, over: Partial<BootOptions> = {}): BootOptions {
  const dir = path.join(root, `vm${n++}`);
  mkdirSync(dir);
  return {
    qemuBinary,
    vm: {
      name: 'unit',
      machine: 'pc',
      accelerator: 'tcg',
      vcpus: 1,
      memoryMiB: 128,
      kernel: '/k',
      console: { logFile: path.join(dir, 'console.log') },
      qmpSocket: path.join(dir, 'qmp.sock'),
      agentChannelSocket: path.join(dir, 'agent-channel.sock'),
    },
    waitFor: { kind: 'console', pattern: /agent ready/ },
    deadlineMs: 5_000,
    stderrLog: path.join(dir, 'qemu.log'),
    ...over,
  };
}

/** An agent connection whose Health.Check answers as `check` does. */
function fakeAgent(check: AgentConnection['client']['check']): AgentConnection {
  const fake = { client: { check }, close: jest.fn(async () => {}) };
  return fake as unknown as AgentConnection;
}

async function bootError(p: Promise<unknown>): Promise<BootError> {
  const e = await p.then(
    (r) => {
      running.push((r as { process: QemuProcess }).process);
      return undefined;
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BootError);
  return e as BootError;
}

describe('bootVm', () => {
  it('resolves on the console ready line with the boot time up to that line', async () => {
    // The ready line comes 300 ms after launch: a boot time counted to the line, not to the
    // spawn, cannot be shorter (a lower bound the machine's speed cannot break).
    const q = fakeQemu('ready', 'sleep 0.3; echo "kata-guest-agent ready" >>"$con"; exec sleep 30');
    const res = await bootVm(options(q));
    running.push(res.process);
    expect(res.process.running).toBe(true);
    expect(Number.isInteger(res.bootMillis)).toBe(true);
    expect(res.bootMillis).toBeGreaterThanOrEqual(300);
  });

  it('a QEMU that exits early fails on its exit, not at the deadline, with the last 20 console lines', async () => {
    const q = fakeQemu('panic', 'echo "Kernel panic - not syncing: no init" >>"$con"; exit 0');
    // A deadline a day away, far past the test's timeout: the boot can only end through the
    // exit being noticed, and the failure names the exit, not a timeout.
    const e = await bootError(bootVm(options(q, { deadlineMs: 24 * 3600_000 })));
    expect(e.failure).toBe('QemuExited');
    expect(e.consoleTail).toHaveLength(20);
    expect(e.consoleTail[19]).toBe('Kernel panic - not syncing: no init');
    expect(e.consoleTail[0]).toBe('boot line 7');
    expect(e.message).toContain('Kernel panic');
  });

  it('a guest that never gets ready fails at the deadline and leaves no process', async () => {
    const q = fakeQemu('hang', 'echo "stuck" >&2; exec sleep 30');
    const e = await bootError(bootVm(options(q, { deadlineMs: 300 })));
    expect(e.failure).toBe('Timeout');
    expect(e.message).toMatch(/not ready within 300 ms/);
    expect(e.qemuStderrTail).toContain('stuck');
  });

  it('waits for Health.Check through the injected agent, retrying errors', async () => {
    const q = fakeQemu('agent', 'exec sleep 30');
    const check = jest
      .fn<AgentConnection['client']['check']>()
      .mockRejectedValueOnce(new Error('UNAVAILABLE'))
      .mockResolvedValueOnce(false)
      .mockResolvedValue(true);
    const agent = fakeAgent(check);
    const openAgent = jest.fn<OpenAgent>(async () => agent);
    const o = options(q, {
      waitFor: { kind: 'agent', grpcSocket: '/run/x/agent.sock' },
      openAgent,
    });
    const res = await bootVm(o);
    running.push(res.process);
    expect(openAgent.mock.calls[0]?.[0]).toEqual({
      agentChannelSocket: o.vm.agentChannelSocket,
      grpcSocket: '/run/x/agent.sock',
    });
    expect(res.agent).toBe(agent);
    expect(check).toHaveBeenCalledTimes(3);
    expect(check.mock.calls[0]?.[0]).toMatchObject({ waitForReady: true, timeoutMs: 2_000 });
    expect(agent.close).not.toHaveBeenCalled();
  });

  it('an agent that never serves: Timeout naming the last answer, client closed', async () => {
    const q = fakeQemu('unhealthy', 'exec sleep 30');
    const agent = fakeAgent(async () => false);
    const e = await bootError(
      bootVm(
        options(q, {
          deadlineMs: 400,
          waitFor: { kind: 'agent', grpcSocket: '/run/x/agent.sock' },
          openAgent: async () => agent,
        }),
      ),
    );
    expect(e.failure).toBe('Timeout');
    expect(e.message).toContain('NOT_SERVING');
    expect(agent.close).toHaveBeenCalled();
  });

  it("the caller's abort ends the boot as Aborted", async () => {
    const q = fakeQemu('abort', 'exec sleep 30');
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const e = await bootError(bootVm(options(q, { signal: ac.signal, deadlineMs: 10_000 })));
    expect(e.failure).toBe('Aborted');
  });

  it('refuses a bad config before starting anything', async () => {
    const q = fakeQemu('never', 'exec sleep 30');
    const o = options(q);
    await expect(bootVm({ ...o, vm: { ...o.vm, kernel: 'rel' } })).rejects.toThrow(/kernel/);
  });
});

describe('waitForConsoleLine', () => {
  it('matches a line written in pieces, and gives up when the signal ends', async () => {
    const f = path.join(root, 'pieces.log');
    const ac = new AbortController();
    const p = waitForConsoleLine(f, /kata-guest-agent[^\n]*ready/, ac.signal, 10);
    setTimeout(() => appendFileSync(f, 'noise\nkata-guest-'), 30);
    setTimeout(() => appendFileSync(f, 'agent placeholder rea'), 60);
    setTimeout(() => appendFileSync(f, 'dy (uptime 1.0s)\n'), 90);
    await expect(p).resolves.toBe('kata-guest-agent placeholder ready');
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 50);
    await expect(waitForConsoleLine(f, /never/, ac2.signal, 10)).resolves.toBeUndefined();
  });
});

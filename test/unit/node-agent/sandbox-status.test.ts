import { describe, expect, it } from '@jest/globals';
import { derivePhase } from '../../../src/controllers/phase.js';
import type { Condition } from '../../../src/crds/index.js';
import {
  guestNetworkStatus,
  nodeAgentConditions,
  nodeAgentStatus,
  withTransitionTimes,
  type RuntimeFacts,
} from '../../../src/node-agent/runtime/sandbox-status.js';
import { unsupportedFeature } from '../../../src/node-agent/runtime/spec-support.js';
import type { KataSandboxSpec } from '../../../src/crds/index.js';

const base: RuntimeFacts = {
  containerNames: ['main'],
  containers: {},
  vmRunning: false,
  agentConnected: false,
  networkReady: false,
};
const running: RuntimeFacts = {
  ...base,
  vm: { pid: 42, accelerator: 'tcg', bootMillis: 1000, startedAt: '2026-01-01T00:00:00Z' },
  vmRunning: true,
  agentConnected: true,
  networkReady: true,
  containers: { main: { created: true, started: true, state: 'Running', restartCount: 0 } },
};
const scheduled = { type: 'Scheduled', status: 'True' as const, reason: 'Scheduled' };

function phaseOf(f: RuntimeFacts) {
  return derivePhase({ conditions: [scheduled, ...nodeAgentConditions(f)], deleting: false });
}

describe('node agent status', () => {
  it('creating → Creating; all running → Running (Ready)', () => {
    expect(phaseOf(base).phase).toBe('Creating');
    expect(phaseOf(running).phase).toBe('Running');
    const ready = nodeAgentConditions(running).find((c) => c.type === 'Ready');
    expect(ready?.status).toBe('True');
  });

  it('a container stuck on its image names the reason on ContainersReady and the phase', () => {
    const f: RuntimeFacts = {
      ...running,
      containerNames: ['main', 'side'],
      containers: {
        ...running.containers,
        side: {
          created: false,
          started: false,
          state: 'Waiting',
          restartCount: 0,
          reason: 'ImagePullBackOff',
          message: 'Back-off pulling image "reg/app:2": manifest unknown',
        },
      },
    };
    const ready = nodeAgentConditions(f).find((c) => c.type === 'ContainersReady');
    expect(ready).toMatchObject({
      status: 'False',
      reason: 'ImagePullBackOff',
      message: 'container side: Back-off pulling image "reg/app:2": manifest unknown',
    });
    expect(phaseOf(f)).toMatchObject({ phase: 'Creating', reason: 'ImagePullBackOff' });
    // Pulling is progress, not a problem: the generic reason stays.
    const pulling: RuntimeFacts = {
      ...f,
      containers: { ...f.containers, side: { ...f.containers['side']!, reason: 'Pulling' } },
    };
    expect(nodeAgentConditions(pulling).find((c) => c.type === 'ContainersReady')?.reason).toBe(
      'ContainersNotReady',
    );
  });

  it('an image problem names the phase reason even while the VM still boots', () => {
    const f: RuntimeFacts = {
      ...base,
      containers: {
        main: {
          created: false,
          started: false,
          state: 'Waiting',
          restartCount: 0,
          reason: 'ErrImagePull',
          message: 'manifest unknown',
        },
      },
    };
    expect(nodeAgentConditions(f).find((c) => c.type === 'VMReady')?.reason).toBe('VMStarting');
    expect(phaseOf(f)).toMatchObject({ phase: 'Creating', reason: 'ErrImagePull' });
  });

  it('a crash-looping container shows CrashLoopBackOff on ContainersReady and the phase', () => {
    const f: RuntimeFacts = {
      ...running,
      containers: {
        main: {
          created: true,
          started: true,
          state: 'Exited',
          exitCode: 1,
          restartCount: 3,
          reason: 'CrashLoopBackOff',
          message: 'back-off 8s restarting failed container main (exit code 1)',
        },
      },
    };
    expect(nodeAgentConditions(f).find((c) => c.type === 'ContainersReady')).toMatchObject({
      status: 'False',
      reason: 'CrashLoopBackOff',
    });
    expect(phaseOf(f)).toMatchObject({ reason: 'CrashLoopBackOff' });
  });

  it('an ended sandbox shows no waiting container: one that never ran says the sandbox ended', () => {
    const f: RuntimeFacts = {
      ...base,
      containerNames: ['main', 'side'],
      containers: {
        side: {
          created: false,
          started: false,
          state: 'Waiting',
          restartCount: 0,
          reason: 'ImagePullBackOff',
        },
      },
      failure: { condition: 'VMReady', reason: 'BootFailed', message: 'no agent' },
      end: { reason: 'BootFailed', message: 'no agent' },
    };
    const containers = nodeAgentStatus(f, undefined, new Date()).containers ?? [];
    expect(containers.map((c) => [c.name, c.state, c.reason])).toEqual([
      ['main', 'Exited', 'SandboxEnded'],
      ['side', 'Exited', 'SandboxEnded'],
    ]);
    expect(containers[0]?.message).toContain('BootFailed');
  });

  it('Succeeded and ContainerFailed ends', () => {
    const ok = phaseOf({ ...running, vmRunning: false, end: { reason: 'Succeeded', message: '' } });
    expect(ok.phase).toBe('Succeeded');
    const msg = 'container main exited with code 2; last output:\nboom';
    const bad = phaseOf({
      ...running,
      failure: { condition: 'ContainersReady', reason: 'ContainerFailed', message: msg },
      end: { reason: 'ContainerFailed', message: msg },
    });
    expect(bad).toEqual({ phase: 'Failed', reason: 'ContainerFailed', message: msg });
  });

  it('a failed step sets its condition False with the reason (HostPathNotAllowed, VMExited)', () => {
    const f: RuntimeFacts = {
      ...base,
      failure: { condition: 'VMReady', reason: 'HostPathNotAllowed', message: 'spec.volumes[0]…' },
      end: { reason: 'HostPathNotAllowed', message: 'spec.volumes[0]…' },
    };
    const vm = nodeAgentConditions(f).find((c) => c.type === 'VMReady');
    expect(vm).toMatchObject({ status: 'False', reason: 'HostPathNotAllowed' });
    expect(phaseOf(f)).toMatchObject({ phase: 'Failed', reason: 'HostPathNotAllowed' });
  });

  it('a running sandbox whose wiring was cut: NetworkReady False (NetworkLost), not Ready, not ended', () => {
    const lost = { reason: 'NetworkLost', message: 'tap tap0_kata of eth0 is gone' };
    const conds = nodeAgentConditions({ ...running, networkLost: lost });
    expect(conds.find((c) => c.type === 'NetworkReady')).toMatchObject({
      status: 'False',
      reason: 'NetworkLost',
      message: lost.message,
    });
    expect(conds.find((c) => c.type === 'VMReady')?.status).toBe('True');
    expect(conds.find((c) => c.type === 'Ready')?.status).toBe('False');
    expect(conds.find((c) => c.type === 'Terminated')?.status).toBe('False');
    expect(phaseOf({ ...running, networkLost: lost }).reason).toBe('NetworkLost');
    // Once ended, the end speaks (no stale NetworkLost).
    const ended = nodeAgentConditions({
      ...running,
      vmRunning: false,
      networkLost: lost,
      end: { reason: 'Succeeded', message: '' },
    });
    expect(ended.find((c) => c.type === 'NetworkReady')?.reason).not.toBe('NetworkLost');
  });

  it('keeps lastTransitionTime while a status is unchanged', () => {
    const prev: Condition[] = [
      {
        type: 'VMReady',
        status: 'True',
        reason: 'VMRunning',
        message: '',
        lastTransitionTime: '2020-01-01T00:00:00Z',
      },
      {
        type: 'Ready',
        status: 'False',
        reason: 'NotReady',
        message: '',
        lastTransitionTime: '2020-01-01T00:00:00Z',
      },
    ];
    const now = new Date('2026-01-01T00:00:00Z');
    const out = withTransitionTimes(nodeAgentConditions(running), prev, now, 3);
    expect(out.find((c) => c.type === 'VMReady')?.lastTransitionTime).toBe('2020-01-01T00:00:00Z');
    expect(out.find((c) => c.type === 'Ready')?.lastTransitionTime).toBe(now.toISOString());
    expect(out.every((c) => c.observedGeneration === 3)).toBe(true);
  });

  it('status carries vm, an empty network and every container', () => {
    const s = nodeAgentStatus(
      { ...running, containerNames: ['main', 'side'] },
      undefined,
      new Date(),
    );
    expect(s.vm?.pid).toBe(42);
    expect(s.network).toEqual({ interfaces: [], routes: [] });
    expect(s.containers?.map((c) => [c.name, c.state])).toEqual([
      ['main', 'Running'],
      ['side', 'Waiting'],
    ]);
    expect(s.conditions?.map((c) => c.type)).toEqual([
      'VMReady',
      'AgentConnected',
      'NetworkReady',
      'ContainersReady',
      'Ready',
      'Terminated',
    ]);
  });

  it('refuses images only without an image cache (NotSupported); networks and block rootfs run', () => {
    const spec = (s: object) =>
      ({
        containers: [{ name: 'a', rootfs: { hostPath: { path: '/srv' } } }],
        ...s,
      }) as unknown as KataSandboxSpec;
    expect(unsupportedFeature(spec({}), { images: false })).toBeUndefined();
    expect(
      unsupportedFeature(spec({ network: { mode: 'cni' } }), { images: false }),
    ).toBeUndefined();
    expect(
      unsupportedFeature(spec({ containers: [{ name: 'a', rootfs: { block: { path: '/x' } } }] }), {
        images: false,
      }),
    ).toBeUndefined();
    expect(
      unsupportedFeature(
        spec({
          containers: [
            { name: 'a', rootfs: { hostPath: { path: '/srv' } } },
            { name: 'b', image: 'busybox' },
          ],
        }),
        { images: false },
      ),
    ).toMatchObject({
      condition: 'ContainersReady',
      reason: 'NotSupported',
      message: expect.stringContaining('spec.containers[1].image') as unknown as string,
    });
    expect(
      unsupportedFeature(spec({ containers: [{ name: 'b', image: 'busybox' }] }), { images: true }),
    ).toBeUndefined();
  });

  it('status.network from what the guest lists: loopback left out, CIDRs, default route named', () => {
    const net = guestNetworkStatus(
      [
        {
          device: 'lo',
          name: 'lo',
          IPAddresses: [{ family: 0, address: '127.0.0.1', mask: '8' }],
          mtu: 65536,
          hwAddr: '',
          pciPath: '',
          type: '',
          rawFlags: 0,
        },
        {
          device: 'eth0',
          name: 'eth0',
          IPAddresses: [{ family: 0, address: '10.1.0.5', mask: '24' }],
          mtu: 1500,
          hwAddr: '02:00:00:00:00:01',
          pciPath: '',
          type: 'veth',
          rawFlags: 0,
        },
      ],
      [
        {
          dest: '',
          gateway: '10.1.0.1',
          device: 'eth0',
          source: '',
          scope: 0,
          family: 0,
          flags: 0,
          mtu: 0,
        },
        {
          dest: '10.1.0.0/24',
          gateway: '',
          device: 'eth0',
          source: '',
          scope: 253,
          family: 0,
          flags: 0,
          mtu: 0,
        },
        {
          dest: '127.0.0.0/8',
          gateway: '',
          device: 'lo',
          source: '',
          scope: 254,
          family: 0,
          flags: 0,
          mtu: 0,
        },
      ],
    );
    expect(net).toEqual({
      interfaces: [
        { name: 'eth0', mac: '02:00:00:00:00:01', addresses: ['10.1.0.5/24'], mtu: 1500 },
      ],
      routes: [
        { dest: 'default', gateway: '10.1.0.1', device: 'eth0' },
        { dest: '10.1.0.0/24', gateway: '', device: 'eth0' },
      ],
    });
  });
});

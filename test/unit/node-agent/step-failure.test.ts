// A step's failure as status shows it: the error's own condition and reason, else the step's.
import { describe, expect, it } from '@jest/globals';
import { BootError } from '../../../src/node-agent/hypervisor/boot.js';
import { GuestImageMissingError } from '../../../src/node-agent/hypervisor/guest-image.js';
import { RootfsViewError } from '../../../src/node-agent/images/rootfs-view.js';
import { NetworkSetupError } from '../../../src/node-agent/network/sandbox-network.js';
import { classify, step, StepError } from '../../../src/node-agent/runtime/step-failure.js';
import { HostPathError } from '../../../src/node-agent/storage/host-paths.js';

describe('classify', () => {
  it('reads the condition and reason an error carries', () => {
    const cases = [
      [
        new HostPathError('HostPathNotAllowed', 'spec.volumes[0].hostPath.path', 'outside'),
        'VMReady',
        'HostPathNotAllowed',
      ],
      [
        new HostPathError(
          'InvalidBlockDevice',
          'spec.containers[0].devices[0].hostPath',
          'not a block device',
        ),
        'ContainersReady',
        'InvalidBlockDevice',
      ],
      [new BootError('Timeout', 'no answer', [], [], 10), 'VMReady', 'BootFailed'],
      [new GuestImageMissingError('/x/vmlinuz', 'is missing'), 'VMReady', 'GuestImageMissing'],
      [new NetworkSetupError('NetnsInUse', 'taken'), 'NetworkReady', 'NetnsInUse'],
      [new RootfsViewError('overlay refused'), 'ContainersReady', 'RootfsViewFailed'],
    ] as const;
    for (const [err, condition, reason] of cases) {
      expect(classify(err, 'AgentConnected', 'CreateFailed')).toEqual({
        condition,
        reason,
        message: err.message,
      });
    }
  });

  it("gives anything else the step's condition and reason, and passes a step's failure through", async () => {
    expect(classify(new Error('boom'), 'AgentConnected', 'AgentLost')).toEqual({
      condition: 'AgentConnected',
      reason: 'AgentLost',
      message: 'boom',
    });
    const failure = { condition: 'NetworkReady', reason: 'CNIFailed', message: 'x' } as const;
    expect(classify(new StepError(failure), 'VMReady', 'CreateFailed')).toBe(failure);
    const thrown = await step('ContainersReady', 'CreateContainerFailed', () =>
      Promise.reject(new Error('no')),
    ).catch((e: unknown) => e);
    expect((thrown as StepError).failure).toEqual({
      condition: 'ContainersReady',
      reason: 'CreateContainerFailed',
      message: 'no',
    });
  });
});

import { describe, expect, it } from '@jest/globals';
import { derivePhase, type ConditionView } from '../../../src/controllers/phase.js';
import { hasEnded } from '../../../src/crds/index.js';

const c = (
  type: string,
  status: ConditionView['status'],
  reason = '',
  message = '',
): ConditionView => ({
  type,
  status,
  reason,
  message,
});
const scheduled = c('Scheduled', 'True', 'Scheduled', 'placed on node a');

describe('derivePhase', () => {
  it('Pending with the scheduler’s reason until scheduled', () => {
    expect(derivePhase({ conditions: [], deleting: false })).toEqual({
      phase: 'Pending',
      reason: '',
      message: '',
    });
    expect(
      derivePhase({
        conditions: [c('Scheduled', 'False', 'Unschedulable', '0/1 nodes are available')],
        deleting: false,
      }),
    ).toEqual({ phase: 'Pending', reason: 'Unschedulable', message: '0/1 nodes are available' });
  });

  it('Scheduled, then Creating once the node agent reports', () => {
    expect(derivePhase({ conditions: [scheduled], deleting: false }).phase).toBe('Scheduled');
    expect(derivePhase({ conditions: [scheduled, c('VMReady', 'True')], deleting: false })).toEqual(
      {
        phase: 'Creating',
        reason: '',
        message: '',
      },
    );
  });

  it('Creating carries a failing condition’s reason while the node agent retries', () => {
    const r = derivePhase({
      conditions: [
        scheduled,
        c('VMReady', 'True'),
        c('AgentConnected', 'False', 'AgentUnreachable', 'no answer'),
      ],
      deleting: false,
    });
    expect(r).toEqual({ phase: 'Creating', reason: 'AgentUnreachable', message: 'no answer' });
  });

  it('Running when Ready', () => {
    const r = derivePhase({
      conditions: [scheduled, c('VMReady', 'True'), c('Ready', 'True')],
      deleting: false,
    });
    expect(r.phase).toBe('Running');
  });

  it('Succeeded or Failed from Terminated', () => {
    expect(
      derivePhase({
        conditions: [
          scheduled,
          c('Ready', 'False'),
          c('Terminated', 'True', 'Succeeded', 'all exited 0'),
        ],
        deleting: false,
      }),
    ).toEqual({ phase: 'Succeeded', reason: 'Succeeded', message: 'all exited 0' });
    expect(
      derivePhase({
        conditions: [
          scheduled,
          c('VMReady', 'False', 'VMExited', 'console tail'),
          c('Terminated', 'True', 'VMExited', 'console tail'),
        ],
        deleting: false,
      }),
    ).toEqual({ phase: 'Failed', reason: 'VMExited', message: 'console tail' });
    expect(
      derivePhase({
        conditions: [
          scheduled,
          c('Terminated', 'True', 'HostPathNotAllowed', '/etc is not allowed'),
        ],
        deleting: false,
      }),
    ).toEqual({ phase: 'Failed', reason: 'HostPathNotAllowed', message: '/etc is not allowed' });
  });

  it('Failed/NodeLost when the node’s lease expired', () => {
    const r = derivePhase({
      conditions: [scheduled, c('Ready', 'True')],
      deleting: false,
      nodeLost: { node: 'a', since: new Date('2026-11-28T12:00:00Z') },
    });
    expect(r).toEqual({
      phase: 'Failed',
      reason: 'NodeLost',
      message: 'node a stopped renewing its node agent lease since 2026-11-28T12:00:00.000Z',
    });
  });

  it('never undoes an end, even if the node comes back', () => {
    const r = derivePhase({
      conditions: [scheduled, c('Ready', 'True')],
      deleting: false,
      previous: { phase: 'Failed', reason: 'NodeLost', message: 'gone' },
    });
    expect(r).toEqual({ phase: 'Failed', reason: 'NodeLost', message: 'gone' });
  });

  it('Terminating once deletion begins, whatever else holds', () => {
    const r = derivePhase({
      conditions: [scheduled, c('Ready', 'True')],
      deleting: true,
      previous: { phase: 'Failed' },
    });
    expect(r.phase).toBe('Terminating');
  });

  it('hasEnded', () => {
    expect(['Succeeded', 'Failed'].every(hasEnded)).toBe(true);
    expect(['Running', 'Pending', undefined].some(hasEnded)).toBe(false);
  });
});

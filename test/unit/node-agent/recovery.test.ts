import { describe, expect, it } from '@jest/globals';
import type { KataSandbox } from '../../../src/crds/index.js';
import { recoveryAction } from '../../../src/node-agent/recovery.js';
import { newSandboxState } from '../../../src/node-agent/state-store.js';

const sb = (extra: Partial<KataSandbox['metadata']> = {}, phase?: string) =>
  ({
    metadata: { uid: 'u', ...extra },
    spec: { containers: [] },
    status: phase ? { phase } : undefined,
  }) as unknown as KataSandbox;

describe('recoveryAction', () => {
  const state = newSandboxState({ uid: 'u', namespace: 'n', name: 'x' }, new Date(0));
  const withQemu = { ...state, qemu: { info: { pid: 1 } } } as unknown as typeof state;
  it('decides per state and sandbox', () => {
    expect(recoveryAction(state, undefined)).toBe('clean');
    expect(recoveryAction(state, sb({ deletionTimestamp: new Date() }))).toBe('deleting');
    expect(
      recoveryAction({ ...state, end: { reason: 'Succeeded', message: '', at: '' } }, sb()),
    ).toBe('keep-ended');
    expect(recoveryAction(withQemu, sb({}, 'Failed'))).toBe('abandon');
    expect(recoveryAction(withQemu, sb({}, 'Running'))).toBe('adopt');
    expect(recoveryAction(state, sb({}, 'Creating'))).toBe('restart');
  });
});

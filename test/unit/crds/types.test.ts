// Compile-time checks that the inferred types follow the schema (tsc and ts-jest type-check
// this file); the runtime assertions only keep Jest happy.
import { describe, expect, it } from '@jest/globals';
import type {
  Condition,
  ContainerSpec,
  KataSandboxSpec,
  KataSandboxStatus,
  Phase,
} from '../../../src/crds/index.js';

describe('inferred types', () => {
  it('follow the schema: required fields, enums, optional defaults', () => {
    const spec: KataSandboxSpec = { containers: [{ name: 'a', image: 'x' }] };
    // @ts-expect-error containers is required
    const noContainers: KataSandboxSpec = {};
    // @ts-expect-error accelerator is an enum
    const badAccel: KataSandboxSpec = { containers: [], vm: { accelerator: 'hvf' } };
    // @ts-expect-error a container needs a name
    const noName: ContainerSpec = { image: 'x' };
    // @ts-expect-error supplementalGroups are numbers
    const groups: ContainerSpec = { name: 'a', supplementalGroups: ['10'] };
    // @ts-expect-error conditions need reason, message and lastTransitionTime
    const cond: Condition = { type: 'Ready', status: 'True' };
    const phase: Phase = 'Running';
    const status: KataSandboxStatus = {
      phase,
      containers: [{ name: 'a', state: 'Exited', exitCode: 1 }],
    };
    expect([spec, noContainers, badAccel, noName, groups, cond, status]).toHaveLength(7);
  });
});

// The soak's short form in `make test`: a few rounds with a fixed seed against the real stack
// (control plane, controller, node agent, QEMU), faults limited to what this file started (the
// plane is shared with the other layers' files): its processes, its VMs' guest agents, its CNI
// plugin and its registry. `make soak` is the long form.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { ensureImage } from '../e2e/sandbox-vm.js';
import { runSoak } from './soak.js';
import { SoakStack } from './stack.js';

jest.setTimeout(20 * 60_000);

// A seed whose five rounds draw five fault kinds (the QEMU, node agent, registry, controller and
// guest agent) over every rootfs kind and network mode.
const SEED = 20261207;
const ROUNDS = 5;

let stack: SoakStack;

beforeAll(async () => {
  ensureImage();
  stack = new SoakStack();
  await stack.start();
}, 30 * 60_000);

afterAll(async () => {
  await stack?.teardown(false);
}, 10 * 60_000);

describe(`soak, short form (seed ${SEED}, ${ROUNDS} rounds)`, () => {
  it('after every round and at the end: phases match the host, deleted sandboxes gone, no leftover, one QEMU each, once means once', async () => {
    const result = await runSoak(stack, {
      rounds: ROUNDS,
      seed: SEED,
      limits: {
        maxLive: 2,
        faults: {
          'node-agent-kill': 2,
          'qemu-kill': 1,
          'controller-kill': 1,
          'guest-agent-kill': 1,
          'cni-fail': 1,
          'registry-stop': 1,
        },
      },
      convergeMs: 240_000,
      log: (line) => process.stdout.write(`${line}\n`),
    });
    const { violation_details, leak_details, ...figures } = result;
    process.stdout.write(`soak-result ${JSON.stringify(figures)}\n`);
    expect({ violations: violation_details, leaks: leak_details }).toEqual({
      violations: [],
      leaks: [],
    });
    expect(result.rounds).toBe(ROUNDS);
    expect(result.invariant_checks).toBeGreaterThan(ROUNDS * 2);
  });
});

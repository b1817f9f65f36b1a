// make soak: SOAK_ROUNDS rounds with SOAK_SEED (a random seed when unset, printed first) against
// the real stack; every step on stdout; ends with one line `soak-result {json}` and exits 1 on
// any violation or leak. SOAK_FAULTS: a comma list of fault kinds (default all of plan.ts).
// Usage (from the repository root): node soak.mjs   (the Makefile bundles this file)
import { randomInt } from 'node:crypto';
import { FAULT_KINDS, type FaultKind } from './plan.js';
import { runSoak, type SoakResult } from './soak.js';
import { SoakStack } from './stack.js';

function faultWeights(list: string | undefined): Partial<Record<FaultKind, number>> {
  const kinds = list ? list.split(',').filter(Boolean) : FAULT_KINDS.filter((k) => k !== 'none');
  const out: Partial<Record<FaultKind, number>> = {};
  for (const k of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(k)) {
      throw new Error(`SOAK_FAULTS: unknown fault kind ${k} (known: ${FAULT_KINDS.join(', ')})`);
    }
    out[k as FaultKind] = 1;
  }
  return out;
}

async function main(): Promise<number> {
  const rounds = Number(process.env['SOAK_ROUNDS'] || 300);
  const seed = process.env['SOAK_SEED'] ? Number(process.env['SOAK_SEED']) : randomInt(2 ** 31);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`SOAK_ROUNDS: ${rounds}`);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`SOAK_SEED: ${seed}`);
  const faults = faultWeights(process.env['SOAK_FAULTS']);
  console.log(`soak: seed ${seed}, ${rounds} rounds, faults ${Object.keys(faults).join(', ')}`);
  const stack = new SoakStack('state-disk-full' in faults);
  let result: SoakResult | undefined;
  let failure: unknown;
  const stop = (sig: string): void => {
    console.error(`${sig}: stopping (deleting the sandboxes; please wait)`);
    void stack.teardown(false).then(() => process.exit(130));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  try {
    await stack.start();
    console.log(`soak: scratch ${stack.base}, namespace ${stack.ns}, node ${stack.node}`);
    result = await runSoak(stack, {
      rounds,
      seed,
      limits: { maxLive: 2, faults },
      convergeMs: Number(process.env['SOAK_CONVERGE_MS'] || 300_000),
      log: (l) => console.log(l),
    });
  } catch (err) {
    failure = err;
    console.error(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  } finally {
    await stack.teardown(process.env['SOAK_KEEP'] === '1');
  }
  const { violation_details, leak_details, ...figures } = result ?? {
    rounds: 0,
    seed,
    violation_details: [String(failure)],
    leak_details: [],
  };
  for (const v of violation_details) console.log(`violation: ${v}`);
  for (const l of leak_details) console.log(`leak: ${JSON.stringify(l)}`);
  const ok = !failure && result && result.violations === 0 && result.leaks === 0;
  console.log(`soak-result ${JSON.stringify({ ...figures, ok: Boolean(ok) })}`);
  return ok ? 0 : 1;
}

process.exit(await main());

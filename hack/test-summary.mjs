// Prints Jest's totals as one plain line, e.g. "42 passed, 0 failed, 3 skipped".
// A suite that failed to run (syntax error, failing beforeAll) counts as one failure.
// Further arguments name layers (test/<layer>/) that must have run at least one test: each that
// ran none counts as one failure, and the exit status is 1.
import { readFileSync } from 'node:fs';

const r = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const brokenSuites = r.testResults.filter(
  (s) => s.status === 'failed' && s.assertionResults.every((a) => a.status !== 'failed'),
).length;
const emptyLayers = process.argv
  .slice(3)
  .filter(
    (layer) =>
      !r.testResults.some(
        (s) => s.name.includes(`/test/${layer}/`) && s.assertionResults.length > 0,
      ),
  );
for (const layer of emptyLayers) console.error(`test-summary: layer ${layer} ran no tests`);
const skipped = r.numPendingTests + r.numTodoTests;
let line = `${r.numPassedTests} passed, ${r.numFailedTests + brokenSuites + emptyLayers.length} failed`;
if (skipped > 0) line += `, ${skipped} skipped`;
console.log(line);
process.exit(emptyLayers.length > 0 ? 1 : 0);

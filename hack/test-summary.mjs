// Prints Jest's totals as one plain line, e.g. "42 passed, 0 failed, 3 skipped".
// A suite that failed to run (syntax error, failing beforeAll) counts as one failure.
import { readFileSync } from 'node:fs';

const r = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const brokenSuites = r.testResults.filter(
  (s) => s.status === 'failed' && s.assertionResults.every((a) => a.status !== 'failed'),
).length;
const skipped = r.numPendingTests + r.numTodoTests;
let line = `${r.numPassedTests} passed, ${r.numFailedTests + brokenSuites} failed`;
if (skipped > 0) line += `, ${skipped} skipped`;
console.log(line);

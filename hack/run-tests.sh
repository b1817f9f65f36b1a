#!/usr/bin/env bash
# Runs every Jest test layer (or those in TEST_LAYERS, space-separated) and ends with one line:
# "N passed, N failed[, N skipped]", read from Jest's own JSON results.
set -uo pipefail
cd "$(dirname "$0")/.."
out=.test-results
mkdir -p "$out"
rm -f "$out/jest.json"
args=()
if [ -n "${TEST_LAYERS:-}" ]; then
  # shellcheck disable=SC2206
  args+=(--selectProjects ${TEST_LAYERS})
fi
# --selectProjects takes several values, so it goes last, after any test path patterns.
# --forceExit: a suite that leaves a handle open (a retry timer, a socket) must not hang the run
# after its results are in; the results file is what the summary reads.
node --experimental-vm-modules node_modules/jest/bin/jest.js --ci --forceExit --json --outputFile="$out/jest.json" \
  "$@" "${args[@]}"
rc=$?
if [ ! -s "$out/jest.json" ]; then
  echo "run-tests: Jest wrote no results (exit $rc)" >&2
  echo "0 passed, 1 failed"
  exit $(( rc == 0 ? 1 : rc ))
fi
# A whole run (no path or name filter) must find tests in every layer it ran: a layer whose files
# all vanished, or whose testMatch broke, fails instead of passing with nothing run.
required=()
if [ $# -eq 0 ]; then
  # shellcheck disable=SC2206
  required=(${TEST_LAYERS:-unit integration e2e soak peers cluster})
fi
node hack/test-summary.mjs "$out/jest.json" "${required[@]}"
summary=$?
exit $(( rc == 0 ? summary : rc ))

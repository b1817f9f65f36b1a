#!/usr/bin/env bash
# `make demo`: bundles hack/demo.ts (it reuses the test harness modules) and runs it.
# DEMO_EXIT=1 stops after the sample is Ready and cleans up (make test runs it that way).
set -euo pipefail
cd "$(dirname "$0")/.."
out=node_modules/.cache/demo
mkdir -p "$out"
npx --no-install esbuild hack/demo.ts --bundle --platform=node --format=esm --target=node20 \
  --packages=external --log-level=warning --outfile="$out/demo.mjs"
KATA_REPO_ROOT=$PWD exec node "$out/demo.mjs"

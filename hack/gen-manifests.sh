#!/usr/bin/env bash
# Writes deploy/crds/ from the schema in src/crds/ (`make manifests`); with --check, fails when the
# committed manifest differs from a fresh generation (`make check-manifests`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=deploy/crds/kata.sandbox.io_katasandboxes.yaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Bundled (yaml included) so the generator runs from a fresh clone without a tsc build.
npx esbuild hack/gen-manifests.ts --bundle --platform=node --format=cjs --log-level=warning \
  --outfile="$tmp/gen.cjs"
node "$tmp/gen.cjs" >"$tmp/crd.yaml"
if [ "${1:-}" = --check ]; then
  if ! diff -u "$out" "$tmp/crd.yaml" >"$tmp/diff"; then
    echo "$out is stale: run 'make manifests' and commit the result" >&2
    head -n 40 "$tmp/diff" >&2
    exit 1
  fi
else
  mkdir -p "$(dirname "$out")"
  cp "$tmp/crd.yaml" "$out"
  echo "wrote $out"
fi

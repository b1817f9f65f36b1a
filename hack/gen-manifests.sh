#!/usr/bin/env bash
# Writes deploy/crds/ from the schemas in src/crds/ (`make manifests`); with --check, fails when a
# committed manifest differs from a fresh generation (`make check-manifests`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=deploy/crds
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Bundled (yaml included) so the generator runs from a fresh clone without a tsc build.
npx esbuild hack/gen-manifests.ts --bundle --platform=node --format=cjs --log-level=warning \
  --outfile="$tmp/gen.cjs"
mkdir -p "$tmp/crds"
node "$tmp/gen.cjs" "$tmp/crds"
if [ "${1:-}" = --check ]; then
  if ! diff -ru "$out" "$tmp/crds" >"$tmp/diff"; then
    echo "$out is stale: run 'make manifests' and commit the result" >&2
    head -n 40 "$tmp/diff" >&2
    exit 1
  fi
else
  mkdir -p "$out"
  cp "$tmp/crds/"*.yaml "$out/"
  echo "wrote $(ls "$tmp/crds" | sed "s|^|$out/|" | tr '\n' ' ')"
fi

#!/usr/bin/env bash
# Fails when the committed src/generated/ differs from a fresh `make gen`.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hack/gen-proto.sh "$tmp/generated"
if ! diff -r "$tmp/generated" src/generated >"$tmp/diff"; then
  echo "src/generated/ is stale: run 'make gen' and commit the result" >&2
  head -n 40 "$tmp/diff" >&2
  exit 1
fi

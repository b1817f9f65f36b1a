#!/usr/bin/env bash
# Builds kata-host-fs (host-fs/, Go, static) into $CACHE_DIR/bin/kata-host-fs when its sources
# changed since the last build (a hash of them is kept next to the binary), and prints the
# binary's path as the last line. Uses the Go module proxy and the normal Go caches.
#
# Environment: CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE="$REPO/host-fs"
CACHE="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator}"
OUT="$CACHE/bin/kata-host-fs"
STAMP="$OUT.sources"

log() { echo "host-fs: $*" >&2; }

# What the binary is made from: the toolchain, go.mod/go.sum and every non-test .go file.
sources_hash() {
  (
    go version
    cd "$MODULE"
    for f in go.mod go.sum $(ls -- *.go | grep -v '_test\.go$' | LC_ALL=C sort); do
      printf '%s\n' "$f"
      cat -- "$f"
    done
  ) | sha256sum | cut -c1-16
}

command -v go >/dev/null || { log "go is not installed (Go 1.26 or newer is required)"; exit 1; }
hash=$(sources_hash)
up_to_date() { [ -x "$OUT" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$hash" ]; }

if ! up_to_date; then
  mkdir -p "$CACHE/bin"
  # Several checkouts share the cache: one build at a time, and the binary replaced atomically.
  exec 9>"$CACHE/bin/.kata-host-fs.lock"
  flock 9
  if ! up_to_date; then
    log "building $OUT"
    tmp=$(mktemp "$CACHE/bin/.kata-host-fs.XXXXXX")
    if ! (cd "$MODULE" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags='-s -w' -o "$tmp" .) >&2; then
      rm -f "$tmp"
      log "build failed"
      exit 1
    fi
    chmod 755 "$tmp"
    mv -f "$tmp" "$OUT"
    echo "$hash" >"$STAMP"
  fi
  exec 9>&-
fi
echo "$OUT"

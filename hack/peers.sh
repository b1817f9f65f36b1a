#!/usr/bin/env bash
# Builds the peer programs of test/peers/ into $CACHE_DIR/peers/bin/ when their inputs changed, and
# prints that directory as the last line (with --tree: the 1.x source tree's directory). kata1-client is built against the Kata 1.x agent source
# (github.com/kata-containers/agent at KATA1_COMMIT, the last 1.x master) in GOPATH mode from that
# tree's own vendor/ (grpc-go 1.11, hashicorp/yamux, gogo/protobuf): the Go module proxy does not
# serve it, and its client must be the unmodified one.
#
# Environment: CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator),
#   KATA1_AGENT_REPO: where to clone the 1.x source from, a URL or a local git dir
#   (default: the workplace mirror when present, else https://github.com/kata-containers/agent);
#   only used when the tree is not cached.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator}/peers"
KATA1_COMMIT=0b75b2d82d41609fd30dadd11f93c7fe41258893
# This workplace keeps a mirror of public repositories; elsewhere the source is cloned from GitHub.
KATA1_MIRROR=/work/.mirror/kata-containers+agent/repo
if [ -z "${KATA1_AGENT_REPO:-}" ] && [ -d "$KATA1_MIRROR" ]; then KATA1_AGENT_REPO=$KATA1_MIRROR; fi
KATA1_REPO="${KATA1_AGENT_REPO:-https://github.com/kata-containers/agent}"
GOPATH_DIR="$CACHE/gopath-${KATA1_COMMIT:0:12}"
TREE="$GOPATH_DIR/src/github.com/kata-containers/agent"
BIN="$CACHE/bin"

log() { echo "peers: $*" >&2; }

command -v go >/dev/null || { log "go is not installed (Go 1.26 or newer is required)"; exit 1; }
command -v git >/dev/null || { log "git is not installed"; exit 1; }
mkdir -p "$CACHE" "$BIN"
# Several checkouts share the cache: one fetch or build at a time.
exec 9>"$CACHE/.lock"
flock 9

# The 1.x tree, once per commit. vendor/golang.org/x/text/collate/tables.go is left out: nothing
# the client imports needs it, and it is the largest file of the tree (some mirrors lack it).
if [ ! -f "$TREE/.complete" ]; then
  log "fetching the Kata 1.x agent source at $KATA1_COMMIT from $KATA1_REPO"
  rm -rf "$TREE" "$CACHE/agent.git"
  mkdir -p "$TREE"
  if [ -d "$KATA1_REPO" ]; then
    gitdir=$KATA1_REPO
  else
    timeout 600 git clone --quiet --bare "$KATA1_REPO" "$CACHE/agent.git" >&2
    gitdir=$CACHE/agent.git
  fi
  git -C "$gitdir" archive "$KATA1_COMMIT" -- . ':!vendor/golang.org/x/text/collate/tables.go' |
    tar -x -C "$TREE"
  rm -rf "$CACHE/agent.git"
  touch "$TREE/.complete"
fi

# One peer program: its sources go inside the 1.x tree so that tree's vendor/ applies.
build_peer() {
  local name=$1 src="$REPO/test/peers/$1" out="$BIN/$1"
  local hash
  hash=$( (go version; echo "$KATA1_COMMIT"; cd "$src" && for f in $(ls -- *.go | LC_ALL=C sort); do
    printf '%s\n' "$f"; cat -- "$f"; done) | sha256sum | cut -c1-16)
  if [ -x "$out" ] && [ "$(cat "$out.sources" 2>/dev/null)" = "$hash" ]; then return; fi
  log "building $out"
  local pkg="$TREE/ksopeers/$name"
  rm -rf "$pkg"
  mkdir -p "$pkg"
  cp -- "$src"/*.go "$pkg/"
  local tmp
  tmp=$(mktemp "$BIN/.$name.XXXXXX")
  if ! (cd "$pkg" && GO111MODULE=off GOFLAGS= GOPATH="$GOPATH_DIR" CGO_ENABLED=0 \
    timeout 900 go build -trimpath -o "$tmp" .) >&2; then
    rm -f "$tmp"
    log "building $name failed"
    exit 1
  fi
  chmod 755 "$tmp"
  mv -f "$tmp" "$out"
  echo "$hash" >"$out.sources"
}

if [ "${1:-}" = --tree ]; then
  echo "$TREE"
  exit 0
fi
build_peer kata1-client
echo "$BIN"

#!/usr/bin/env bash
# `make fresh-check`: runs the steps of `make test` that install or generate (the Makefile's
# PREPARE_TARGETS, given as arguments) in a clean Debian 12 root that holds only what the README
# lists as prerequisites, from a clone of the committed tree (HEAD, not the work tree). So a
# package missing from the install list fails here, not on a user's fresh machine.
#
#   hack/fresh-check.sh TARGET...      e.g. setup check-gen check-manifests typecheck guest controlplane
#
# The root:
#   - base (cached): `debootstrap --variant=minbase bookworm` (essential packages + apt) from the
#     Debian mirror this host's apt uses, its apt sources, then git and make from Debian packages
#     (--no-install-recommends). Kept under $CACHE/base-<hash>, the hash over the suite, mirror,
#     variant, packages, apt configuration and the recipe below; built once.
#   - each run: an overlay on the base (so every run starts from the same bytes), the host's
#     Node.js + npm and Go toolchains copied in at the same paths, /etc/resolv.conf copied,
#     /proc, /sys, /dev mounted, and the host's Go module and build caches as overlays (read from,
#     never written: the control plane links in minutes instead of a 30-minute cold build).
# Everything is unmounted and the run's files removed on every exit path (error, Ctrl-C, TERM).
# The host is not changed, apart from installing debootstrap (and wget) if missing.
#
# Environment:
#   CACHE_DIR            cache root (default ${XDG_CACHE_HOME:-~/.cache}/kata-sandbox-operator);
#                        the roots live in $CACHE_DIR/fresh-root/
#   FRESH_CHECK_MIRROR   Debian mirror (default: the first one this host's apt sources use for bookworm)
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator}/fresh-root
SUITE=bookworm
VARIANT=minbase
BASE_PACKAGES=(git make)
CLONE=/src/kata-sandbox-operator # where the clone is inside the root

log() { echo "fresh-check: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[ $# -gt 0 ] || die "usage: hack/fresh-check.sh TARGET... (make fresh-check passes PREPARE_TARGETS)"
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || "$REPO/hack/setup.sh" debootstrap
command -v node >/dev/null || die "node is not on PATH (a prerequisite: Node.js 20 + npm)"
command -v npm >/dev/null || die "npm is not on PATH (a prerequisite: Node.js 20 + npm)"
command -v go >/dev/null || die "go is not on PATH (a prerequisite: Go)"

# --- mounts: every one is recorded and undone on exit -----------------------------------------
MOUNTED_ROOTS=() # roots under which this script mounted anything
mounted_under() { findmnt -rn -o TARGET | grep -E "^$1(/|$)" || true; }
# Stops what still runs inside a root (a daemon a package's postinst started), then unmounts
# everything below it, deepest first.
undo_mounts() {
  local r p i m
  for r in "${MOUNTED_ROOTS[@]}"; do
    for p in /proc/[0-9]*; do
      if [ "$(readlink "$p/root" 2>/dev/null)" = "$r" ]; then kill -KILL "${p#/proc/}" 2>/dev/null || true; fi
    done
    for i in 1 2 3; do
      m=$(mounted_under "$r" | sort -r)
      [ -n "$m" ] || break
      while IFS= read -r p; do
        umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true
      done <<<"$m"
    done
  done
  return 0
}
# Removes a directory only when nothing is mounted below it (never rm -rf through a bind of /dev).
remove_dir() {
  local left
  left=$(mounted_under "$1")
  if [ -n "$left" ]; then
    log "NOT removing $1: still mounted there: $left"
    return 1
  fi
  rm -rf --one-file-system -- "$1"
}

system_mounts() { # root: /proc, /sys, /dev as a chroot needs them
  local r=$1
  MOUNTED_ROOTS+=("$r")
  mkdir -p "$r/proc" "$r/sys" "$r/dev"
  mount -t proc proc "$r/proc"
  mount -t sysfs sysfs "$r/sys"
  mount --rbind /dev "$r/dev"
  mount --make-rslave "$r/dev"
}

in_root() { # root, command...: runs in the root with a clean environment
  local r=$1
  shift
  env -i HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
    PATH="$GO_BIN_DIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    chroot "$r" "$@"
}

WORK_DIRS=()
cleanup() {
  local rc=$? d
  trap - EXIT INT TERM
  undo_mounts
  for d in "${WORK_DIRS[@]}"; do remove_dir "$d" || rc=1; done
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -n 9 || {
  log "another fresh-check holds $CACHE/.lock; waiting"
  flock 9
}
# Under the lock, any run directory left is from a run that was killed (SIGKILL): undo it.
for d in "$CACHE"/run-* "$CACHE"/.base-*; do
  [ -e "$d" ] || continue
  log "removing leftovers of an interrupted run: $d"
  MOUNTED_ROOTS+=("$d")
  undo_mounts
  remove_dir "$d"
done
MOUNTED_ROOTS=()
rm -rf "$CACHE/logs" # a failed step's output, from the last run

# --- inputs -----------------------------------------------------------------------------------
# shellcheck source=hack/lib/debian-apt.sh
. "$REPO/hack/lib/debian-apt.sh"
MIRROR=${FRESH_CHECK_MIRROR:-$(host_mirror "$SUITE" | head -n1)}
[ -n "$MIRROR" ] || die "no apt source for $SUITE in /etc/apt/sources.list*; set FRESH_CHECK_MIRROR"

mapfile -t APT_FILES < <(apt_config_files)

# Go: the toolchain directory and the caches to share.
GOROOT_HOST=$(go env GOROOT)
GO_BIN_DIR=$GOROOT_HOST/bin
GOMODCACHE_HOST=$(go env GOMODCACHE)
GOCACHE_HOST=$(go env GOCACHE)

# --- the base root (cached) -------------------------------------------------------------------
build_base() { # dir
  local b=$1 f
  debootstrap --variant="$VARIANT" --arch=amd64 "$SUITE" "$b" "$MIRROR" >"$b.debootstrap.log" 2>&1 || {
    tail -n 30 "$b.debootstrap.log" >&2
    die "debootstrap $SUITE from $MIRROR failed (log above)"
  }
  rm -f "$b"/etc/apt/sources.list "$b"/etc/apt/sources.list.d/*
  for f in "${APT_FILES[@]}"; do
    mkdir -p "$b$(dirname "$f")"
    cp "$f" "$b$f"
  done
  cp /etc/resolv.conf "$b/etc/resolv.conf"
  # Packages' maintainer scripts must not start services from inside the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$b/usr/sbin/policy-rc.d"
  chmod 755 "$b/usr/sbin/policy-rc.d"
  system_mounts "$b"
  in_root "$b" apt-get update -qq
  in_root "$b" apt-get install -y -qq --no-install-recommends "${BASE_PACKAGES[@]}" >/dev/null
  in_root "$b" apt-get clean
  undo_mounts
  MOUNTED_ROOTS=()
  # A fresh machine has no package lists yet (make setup runs apt-get update when it needs to).
  rm -rf "$b"/var/lib/apt/lists/* "$b/etc/resolv.conf"
  mkdir -p "$b/var/lib/apt/lists/partial"
}

BASE_KEY=$({
  echo "$SUITE $VARIANT $MIRROR ${BASE_PACKAGES[*]}"
  for f in "${APT_FILES[@]}"; do echo "$f" && cat "$f"; done
  declare -f build_base system_mounts in_root
} | sha256sum | cut -c1-16)
BASE=$CACHE/base-$BASE_KEY
T0=$(date +%s)
if [ -f "$BASE/.complete" ]; then
  log "base root: $BASE (cached)"
else
  log "building the base root: debootstrap --variant=$VARIANT $SUITE from $MIRROR, then ${BASE_PACKAGES[*]}"
  tmp=$CACHE/.base-$BASE_KEY
  WORK_DIRS+=("$tmp" "$tmp.debootstrap.log")
  MOUNTED_ROOTS+=("$tmp") # debootstrap mounts /proc and /sys there itself
  build_base "$tmp"
  touch "$tmp/.complete"
  mv -T "$tmp" "$BASE"
  rm -f "$tmp.debootstrap.log"
  # Older bases (other inputs) are not needed any more.
  for d in "$CACHE"/base-*; do
    if [ "$d" != "$BASE" ]; then remove_dir "$d"; fi
  done
  log "base root built in $(($(date +%s) - T0))s: $BASE"
fi

# --- this run's root --------------------------------------------------------------------------
RUN=$CACHE/run-$$
ROOT=$RUN/root
WORK_DIRS+=("$RUN")
mkdir -p "$RUN"/{upper,work,root,gomod-upper,gomod-work,gocache-upper,gocache-work}
MOUNTED_ROOTS+=("$ROOT")
mount -t overlay fresh-root -o "lowerdir=$BASE,upperdir=$RUN/upper,workdir=$RUN/work" "$ROOT"
system_mounts "$ROOT"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

# Node.js + npm, as installed on the host (the binary and npm's folder, with their links).
copy_path() { # host path (file, dir or link) to the same place in the root
  mkdir -p "$ROOT$(dirname "$1")"
  cp -a "$1" "$ROOT$1"
}
NODE_BIN=$(readlink -f "$(command -v node)")
NPM_CLI=$(readlink -f "$(command -v npm)")
NPM_DIR=${NPM_CLI%/bin/npm-cli.js}
[ -d "$NPM_DIR/bin" ] || die "cannot tell npm's folder from $NPM_CLI"
copy_path "$NODE_BIN"
copy_path "$NPM_DIR"
for l in node npm npx; do
  p=$(command -v "$l" || true)
  if [ -n "$p" ] && [ ! -e "$ROOT$p" ] && [ ! -L "$ROOT$p" ]; then copy_path "$p"; fi
done
# Go, and its caches as overlays: what the build adds lands in this run's upper dirs.
copy_path "$GOROOT_HOST"
share_cache() { # host dir, dir in the root, name
  mkdir -p "$ROOT$2"
  if [ -d "$1" ]; then
    mount -t overlay "fresh-$3" -o "lowerdir=$1,upperdir=$RUN/$3-upper,workdir=$RUN/$3-work" "$ROOT$2"
  fi
}
share_cache "$GOMODCACHE_HOST" /root/go/pkg/mod gomod
share_cache "$GOCACHE_HOST" /root/.cache/go-build gocache

# This network's own TLS trust (an intercepting proxy's CA, as NODE_EXTRA_CA_CERTS names it on
# the host), for npm's downloads. Not a project requirement, and kept apart from /etc/ssl so the
# root's system trust (ca-certificates or not) stays that of a fresh machine.
STEP_ENV=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  mkdir -p "$ROOT/etc/fresh-check"
  cp "$NODE_EXTRA_CA_CERTS" "$ROOT/etc/fresh-check/extra-ca.crt"
  STEP_ENV+=(NODE_EXTRA_CA_CERTS=/etc/fresh-check/extra-ca.crt)
fi

log "prerequisites in the root: node $(in_root "$ROOT" node --version), npm $(in_root "$ROOT" npm --version)," \
  "$(in_root "$ROOT" go version | cut -d' ' -f3), $(in_root "$ROOT" git --version | cut -d' ' -f3-), $(in_root "$ROOT" make --version | head -n1)"

# The committed tree: a clone of HEAD (untracked and uncommitted files are not part of it).
HEAD=$(git -C "$REPO" rev-parse HEAD)
git clone --quiet --no-hardlinks --no-checkout "$REPO" "$ROOT$CLONE"
git -C "$ROOT$CLONE" -c advice.detachedHead=false checkout --quiet "$HEAD"
log "cloned $HEAD ($(git -C "$REPO" log -1 --format=%s "$HEAD" | cut -c1-60))"

# --- the steps --------------------------------------------------------------------------------
# After a failed step: the files and commands its output says are missing, and which Debian
# package has them on this host.
explain_failure() { # step log
  local logf=$1 what pkg
  {
    sed -n 's/^\(.*[^ ]\): File not found\.*$/\1/p' "$logf" | sed 's/^.*: //'
    sed -n "s/^.*: \([^ :]*\): command not found$/\1/p" "$logf"
    sed -n "s/^.*\(env\|make\|exec\): '*\([^ :']*\)'*: No such file or directory$/\2/p" "$logf"
    sed -n 's/^.*spawn \([^ ]*\) ENOENT.*$/\1/p' "$logf"
  } | sort -u | while IFS= read -r what; do
    [ -n "$what" ] || continue
    case "$what" in
    /*) pkg=$(dpkg -S "$what" 2>/dev/null | head -n1 | cut -d: -f1) ;;
    */*) pkg=$(dpkg -S "*/$what" 2>/dev/null | head -n1 | cut -d: -f1) ;;
    *) pkg=$(dpkg -S "*bin/$what" 2>/dev/null | head -n1 | cut -d: -f1) ;;
    esac
    if [ -n "$pkg" ]; then
      log "MISSING on a fresh machine: $what — on this host it comes from the Debian package $pkg;" \
        "add $pkg to APT_PACKAGES in the Makefile"
    else
      log "MISSING on a fresh machine: $what (no Debian package on this host has it either)"
    fi
  done
}

TIMES=()
for target in "$@"; do
  log "make $target"
  t=$(date +%s)
  steplog=$RUN/make-$target.log
  if ! in_root "$ROOT" env "${STEP_ENV[@]}" bash -c 'cd "$1" && exec make --no-print-directory "$2"' _ "$CLONE" "$target" 2>&1 |
    tee "$steplog"; then
    mkdir -p "$CACHE/logs"
    cp "$steplog" "$CACHE/logs/"
    log "FAILED: 'make $target' in a fresh Debian $SUITE root (after $(($(date +%s) - t))s);" \
      "its output: $CACHE/logs/$(basename "$steplog")"
    explain_failure "$steplog"
    exit 1
  fi
  TIMES+=("$target $(($(date +%s) - t))s")
done
log "ok in $(($(date +%s) - T0))s: ${TIMES[*]}"

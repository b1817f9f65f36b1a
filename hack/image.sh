#!/usr/bin/env bash
# `make image`: the project's image, built from the Dockerfile with buildah (chroot isolation, no
# daemon), from base images made here from Debian packages, so no public image registry is needed.
# The Dockerfile keeps its ARG bases: `docker build .` with the public node and golang images
# still works where those are reachable.
#
#   hack/image.sh build IMAGE [PUSH]   build IMAGE; with PUSH (registry/name:tag) push it there
#   hack/image.sh bases                make the base images (cached) and print their names
#
# The bases, in buildah's storage, each tagged with a hash of what went into it:
#   localhost/kata-base/debian:bookworm-<key>   debootstrap --variant=minbase bookworm from this
#                                               host's Debian mirror, with ca-certificates
#   localhost/kata-base/node:20-bookworm-<key>  that, plus this host's Node.js and npm
#   localhost/kata-base/golang:1.26-bookworm-<key>  that debian base, plus this host's Go
# This machine's TLS trust (an intercepting proxy's CA, as /usr/local/share/ca-certificates holds
# it) goes into the bases: the build's npm and Go downloads, and the node agent's image pulls,
# pass through it.
#
# Environment: XDG_CACHE_HOME (cache root; the debootstrap root is kept there).
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator/image-bases"
SUITE=bookworm
# shellcheck source=hack/lib/debian-apt.sh
. "$REPO/hack/lib/debian-apt.sh"

log() { echo "image: $*" >&2; }
die() {
  log "$*"
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, buildah)"
command -v buildah >/dev/null || die "buildah is not installed (make setup installs it)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (make setup installs it)"

MIRROR=$(host_mirror "$SUITE" | head -n1)
[ -n "$MIRROR" ] || die "no apt source for $SUITE in /etc/apt/sources.list*"
mapfile -t APT_FILES < <(apt_config_files)
mapfile -t EXTRA_CAS < <(find /usr/local/share/ca-certificates -name '*.crt' -type f 2>/dev/null | sort)
NODE_BIN=$(readlink -f "$(command -v node)")
NPM_CLI=$(readlink -f "$(command -v npm)")
NPM_DIR=${NPM_CLI%/bin/npm-cli.js}
GOROOT_HOST=$(go env GOROOT)

# --- the Debian root (cached on disk) -------------------------------------------------------
make_root() { # dir
  local b=$1 f
  debootstrap --variant=minbase --include=ca-certificates --arch=amd64 "$SUITE" "$b" "$MIRROR" \
    >"$b.log" 2>&1 || {
    tail -n 30 "$b.log" >&2
    die "debootstrap $SUITE from $MIRROR failed (log above)"
  }
  rm -f "$b.log" "$b"/etc/apt/sources.list "$b"/etc/apt/sources.list.d/*
  for f in "${APT_FILES[@]}"; do
    mkdir -p "$b$(dirname "$f")"
    cp "$f" "$b$f"
  done
  for f in "${EXTRA_CAS[@]}"; do cp "$f" "$b/usr/local/share/ca-certificates/"; done
  chroot "$b" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in $b"
  rm -rf "$b"/var/lib/apt/lists/* "$b"/var/cache/apt/*.bin "$b"/var/cache/apt/archives/*.deb
  # debootstrap mounted these while it ran
  umount "$b/proc" "$b/sys" 2>/dev/null || true
}

ROOT_KEY=$({
  echo "$SUITE $MIRROR"
  for f in "${APT_FILES[@]}" "${EXTRA_CAS[@]}"; do echo "$f" && cat "$f"; done
  declare -f make_root
} | sha256sum | cut -c1-12)

ensure_root() {
  local root="$CACHE/debian-$ROOT_KEY" tmp d
  if [ ! -f "$root/.complete" ]; then
    mkdir -p "$CACHE"
    tmp=$(mktemp -d "$CACHE/.debian.XXXXXX")
    log "debootstrap $SUITE (minbase) from $MIRROR"
    make_root "$tmp"
    touch "$tmp/.complete"
    rm -rf "$root"
    mv -T "$tmp" "$root"
    for d in "$CACHE"/debian-*; do [ "$d" = "$root" ] || rm -rf --one-file-system "$d"; done
  fi
  echo "$root"
}

# --- base images ------------------------------------------------------------------------------
has_image() { buildah images --quiet "$1" >/dev/null 2>&1; }

# name root env... : an image of the root plus what add_<kind> puts in
commit_base() {
  local name=$1 root=$2 kind=$3 ctr mnt
  shift 3
  ctr=$(buildah from --quiet scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$root" --exclude=./.complete -cf - . | tar -C "$mnt" -xpf -
  case "$kind" in
  node)
    mkdir -p "$mnt$(dirname "$NODE_BIN")" "$mnt/usr/lib/node_modules"
    cp -a "$NODE_BIN" "$mnt/usr/bin/node"
    cp -a "$NPM_DIR" "$mnt/usr/lib/node_modules/npm"
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/bin/npm"
    ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/bin/npx"
    ;;
  golang)
    mkdir -p "$mnt/usr/local" "$mnt/go"
    cp -a "$GOROOT_HOST" "$mnt/usr/local/go"
    ;;
  esac
  buildah umount "$ctr" >/dev/null
  local env_args=() e
  for e in "$@"; do env_args+=(--env "$e"); done
  buildah config --os linux --arch amd64 "${env_args[@]}" --cmd /bin/bash "$ctr"
  buildah commit --quiet --rm "$ctr" "$name" >/dev/null
}

bases() { # prints NODE_IMAGE=… RUNTIME_IMAGE=… GO_IMAGE=…
  local root key node go debian
  root=$(ensure_root)
  key=$({
    echo "$ROOT_KEY $("$NODE_BIN" --version) $(go version)"
    declare -f commit_base
  } | sha256sum | cut -c1-12)
  debian="localhost/kata-base/debian:$SUITE-$key"
  node="localhost/kata-base/node:20-$SUITE-$key"
  go="localhost/kata-base/golang:1.26-$SUITE-$key"
  local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  has_image "$debian" || commit_base "$debian" "$root" plain "PATH=$path"
  has_image "$node" || commit_base "$node" "$root" node "PATH=$path" \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
  has_image "$go" || commit_base "$go" "$root" golang "PATH=/go/bin:/usr/local/go/bin:$path" \
    GOPATH=/go GOTOOLCHAIN=local "GOPROXY=$(go env GOPROXY)"
  echo "NODE_IMAGE=$node"
  echo "RUNTIME_IMAGE=$node"
  echo "GO_IMAGE=$go"
}

build() { # image [push]
  local image=$1 push=${2:-} args=() line start
  start=$(date +%s)
  while IFS= read -r line; do args+=(--build-arg "$line"); done < <(bases)
  log "building $image with buildah (bases: ${args[*]})"
  # MKNOD: guest/build.sh makes the initramfs's /dev/console and /dev/null (docker's default
  # capabilities have it; buildah's do not)
  buildah build --isolation chroot --cap-add CAP_MKNOD --layers --force-rm --pull=never "${args[@]}" \
    -t "$image" "$REPO" >&2 ||
    die "buildah build failed (output above)"
  log "built $image in $(($(date +%s) - start)) s"
  if [ -n "$push" ]; then
    buildah push --quiet --tls-verify=false "$image" "docker://$push" >&2 || die "push to $push failed"
    log "pushed $push"
  fi
}

case "${1:-}" in
bases) bases ;;
build)
  [ -n "${2:-}" ] || die "usage: hack/image.sh build IMAGE [PUSH]"
  build "$2" "${3:-}"
  ;;
*)
  sed -n '2,/^set -/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac

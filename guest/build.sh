#!/usr/bin/env bash
# Builds the guest image into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator/guest/<hash>/
# and points .../guest/current at it. The image dir holds
#   vmlinux, vmlinuz, config   the kernel made for the job (guest/kernel/build.sh, cached apart;
#                              everything built in): `spec.vm.kernel: default`
#   debian/{vmlinux,vmlinuz,config}  Debian's stock kernel (linux-image-amd64), whose modules are
#                              in the initrd: `spec.vm.kernel: debian`
#   rootfs.erofs               the default kernel's root: the same tree as the initrd (without the
#                              stock kernel's modules) as a read-only erofs image on virtio-blk
#   initrd, manifest.json, inputs.txt
# (A GUEST_EXEC_AGENT variant has only the stock kernel, at the top level.) <hash> covers every input (exact Debian package versions of
# the kernel, busybox-static, crun, iproute2 and every library they and node link, the node
# binary's sha256, the init, this script, the agent bundle's sha256, the terminal relay's Go sources
# and toolchain, the initrd compression, erofs-utils), so
# the image is rebuilt only when an input changes, and the same inputs give the same hash and the
# same bytes (sorted cpio, fixed mtimes, owner root).
#
# Environment:
#   GUEST_AGENT_BUNDLE        a ready agent bundle to put in the image (.cjs: run through the
#                             loader with a code cache, as the default one); default: bundle
#                             src/agent/guest/main.ts with esbuild (CommonJS, run by
#                             guest/agent-loader.cjs with a V8 code cache made at build time), or
#                             guest/placeholder-agent.mjs while that does not exist
#   GUEST_AGENT_CODE_CACHE    on (default) | off: our own bundle's loader without a code cache
#   GUEST_INITRD_COMPRESSION  none (default, fastest to unpack under TCG) | lz4 | zstd | gzip
#   GUEST_NODE_OPTIONS        extra node flags for the agent (written to the image)
#   GUEST_EXEC_AGENT          a VARIANT image: this static executable is the guest's agent instead
#                             of ours (e.g. Kata 1.x's kata-agent, for the peer tests); guest/init-exec
#                             loads the drivers and execs it as PID 1, which mounts and sets up the
#                             rest itself. No node, crun or iproute2 in it. Its images go to
#                             GUEST_CACHE_ROOT, default .../kata-sandbox-operator/guest-exec-agent, so
#                             the Node agent's `current` is never touched.
#   GUEST_KERNEL_PACKAGE      override the stock kernel package (default: what linux-image-amd64 depends on)
#   GUEST_KERNEL_DIR          a kernel dir guest/kernel/build.sh made (vmlinux, bzImage, config,
#                             manifest.json) to use as the default kernel instead of running it
#                             (the Dockerfile builds the kernel in a stage of its own)
#   GUEST_FORCE=1             rebuild even when the cached image exists
#   GUEST_KEEP_IMAGES         how many <hash> image dirs to keep (default 3, newest used first);
#                             older ones are removed after each run, never the one `current` names
#   GUEST_CACHE_ROOT          where the <hash> dirs and `current` go (default
#                             ${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator/guest)
#   GUEST_DEB_CACHE           where downloaded kernel .debs are kept (default $GUEST_CACHE_ROOT/debs, for a
#                             GUEST_EXEC_AGENT variant the default image root's debs/);
#                             lets a build into another root reuse the download
#   XDG_CACHE_HOME            cache root
# Prints the image directory on stdout (last line).
set -euo pipefail
export LC_ALL=C

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$GUEST_DIR")
EXEC_AGENT=${GUEST_EXEC_AGENT:-}
if [ -n "$EXEC_AGENT" ]; then
  [ -f "$EXEC_AGENT" ] && [ -x "$EXEC_AGENT" ] || { echo "guest/build: GUEST_EXEC_AGENT=$EXEC_AGENT is not an executable file" >&2; exit 1; }
  EXEC_AGENT=$(readlink -f "$EXEC_AGENT")
  CACHE_ROOT=${GUEST_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator/guest-exec-agent}
else
  CACHE_ROOT=${GUEST_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator/guest}
fi
INIT_FILE=$GUEST_DIR/init
if [ -n "$EXEC_AGENT" ]; then INIT_FILE=$GUEST_DIR/init-exec; fi
# A variant shares the default image's kernel download.
DEB_ROOT=$CACHE_ROOT
if [ -n "$EXEC_AGENT" ]; then DEB_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator/guest; fi
DEB_CACHE=${GUEST_DEB_CACHE:-$DEB_ROOT/debs}
KEEP_IMAGES=${GUEST_KEEP_IMAGES:-3}
COMPRESSION=${GUEST_INITRD_COMPRESSION:-none}
NODE_OPTIONS_GUEST=${GUEST_NODE_OPTIONS:-}
NODE_BIN=$(readlink -f "$(command -v node)")

# Modules in the image (with whatever they depend on, from modinfo). crc32c_generic provides the
# "crc32c" crypto algorithm that jbd2/ext4/libcrc32c ask for through a softdep.
MODULES=(virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mmio
  virtio_console netfs fscache 9pnet 9pnet_virtio 9p failover net_failover virtio_net virtio_blk
  crc16 crc32c_generic libcrc32c mbcache jbd2 ext4 xfs)
# The ones the init loads at boot (device drivers: there is no udev to load them when a device
# shows up). The filesystems (9p, ext4, xfs and their helpers) load on first mount through the
# kernel's request_module -> /sbin/modprobe (busybox) -> modules.dep/modules.alias made by depmod;
# insmod of ext4 + xfs alone costs ~2 s under TCG. GUEST_EAGER_MODULES=all loads every module.
BOOT_MODULES=(virtio_pci virtio_mmio virtio_console virtio_blk virtio_net)
if [ "${GUEST_EAGER_MODULES:-}" = all ]; then BOOT_MODULES=("${MODULES[@]}"); fi

log() { echo "guest/build: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

case "$COMPRESSION" in none | lz4 | zstd | gzip) ;; *) die "GUEST_INITRD_COMPRESSION=$COMPRESSION (none|lz4|zstd|gzip)" ;; esac
[[ "$KEEP_IMAGES" =~ ^[1-9][0-9]*$ ]] || die "GUEST_KEEP_IMAGES=$KEEP_IMAGES (a number >= 1)"

"$REPO_DIR/hack/setup.sh" busybox-static cpio crun kmod iproute2 zstd lz4 xz-utils erofs-utils

mkdir -p "$CACHE_ROOT" "$DEB_CACHE"
exec 9>"$CACHE_ROOT/.lock"
flock 9

WORK=$(mktemp -d "$CACHE_ROOT/.build-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- agent bundle ---------------------------------------------------------------------------
AGENT_LOADER= # set for our own bundle: it then runs through guest/agent-loader.cjs with a code cache
if [ -n "$EXEC_AGENT" ]; then
  AGENT_BUNDLE=$EXEC_AGENT
  AGENT_SOURCE=$EXEC_AGENT
elif [ -n "${GUEST_AGENT_BUNDLE:-}" ]; then
  [ -f "$GUEST_AGENT_BUNDLE" ] || die "GUEST_AGENT_BUNDLE=$GUEST_AGENT_BUNDLE does not exist"
  AGENT_BUNDLE=$GUEST_AGENT_BUNDLE
  AGENT_SOURCE=$GUEST_AGENT_BUNDLE
  # A CommonJS bundle (.cjs, made as below) runs through the loader with a code cache too.
  case "$GUEST_AGENT_BUNDLE" in *.cjs) AGENT_LOADER=$GUEST_DIR/agent-loader.cjs ;; esac
elif [ -f "$REPO_DIR/src/agent/guest/main.ts" ]; then
  AGENT_BUNDLE=$WORK/kata-guest-agent.cjs
  AGENT_SOURCE=src/agent/guest/main.ts
  AGENT_LOADER=$GUEST_DIR/agent-loader.cjs
  log "bundling $AGENT_SOURCE with esbuild"
  # CommonJS: the loader compiles it as a vm.Script with its V8 code cache (below). No comments
  # (--minify-whitespace), so it is ASCII and the loader reads it without UTF-8 decoding; names stay.
  (cd "$REPO_DIR" && npx --no-install esbuild src/agent/guest/main.ts --bundle --platform=node \
    --format=cjs --target=node20 --minify-whitespace --charset=ascii --log-level=warning \
    --outfile="$AGENT_BUNDLE")
else
  AGENT_BUNDLE=$GUEST_DIR/placeholder-agent.mjs
  AGENT_SOURCE=guest/placeholder-agent.mjs
  log "src/agent/guest/main.ts does not exist yet: using the placeholder agent"
fi

# --- agent code cache (our own bundle only) ---------------------------------------------------
# The image's /usr/bin/kata-guest-agent.js is then guest/agent-loader.cjs: it compiles the bundle
# (/usr/lib/kata-guest-agent/agent.cjs) with the V8 code cache made here by
# guest/agent-code-cache.mjs, with the image's node binary and the guest's node flags (V8 rejects a
# cache from another V8 or other flags). --random-seed=1 (not part of V8's flag check) makes the
# cache the same bytes on every build. A cache this node rejects fails the build.
AGENT_CODE_CACHE_MAKER=$GUEST_DIR/agent-code-cache.mjs
AGENT_CODE_CACHE=${GUEST_AGENT_CODE_CACHE:-on} # off: the loader without a cache (to measure it)
case "$AGENT_CODE_CACHE" in on | off) ;; *) die "GUEST_AGENT_CODE_CACHE=$AGENT_CODE_CACHE (on|off)" ;; esac
install_agent_with_code_cache() { # root-dir agent-path
  local lib=/usr/lib/kata-guest-agent/agent.cjs verdict
  mkdir -p "$1$(dirname "$lib")"
  cp "$AGENT_BUNDLE" "$1$lib"
  cp "$AGENT_LOADER" "$1$2"
  chmod 0644 "$1$lib" "$1$2"
  if [ "$AGENT_CODE_CACHE" = off ]; then return 0; fi
  # shellcheck disable=SC2086 # NODE_OPTIONS_GUEST is a list of flags
  env -u NODE_OPTIONS "$NODE_BIN" --random-seed=1 $NODE_OPTIONS_GUEST "$AGENT_CODE_CACHE_MAKER" \
    "$AGENT_BUNDLE" "$1$lib.cache" "$lib" >&2 || die "making the agent's code cache failed"
  chmod 0644 "$1$lib.cache"
  # shellcheck disable=SC2086
  verdict=$(env -u NODE_OPTIONS "$NODE_BIN" $NODE_OPTIONS_GUEST "$1$2" --version 2>&1 >/dev/null) || true
  case "$verdict" in *"code cache accepted"*) log "agent ${verdict#kata-guest-agent-loader: }" ;;
  *) die "the agent's code cache does not load: $verdict" ;; esac
}

# --- inputs ---------------------------------------------------------------------------------
sha() { sha256sum "$1" | cut -d' ' -f1; }

# The terminal relay (guest/tty-relay: Go, static, ours): what it is made from is the toolchain,
# go.mod/go.sum and its non-test .go files. It is built only when the image is.
TTY_RELAY_DIR=$GUEST_DIR/tty-relay
tty_relay_sources() {
  go version
  (cd "$TTY_RELAY_DIR" && for f in go.mod go.sum $(ls -- *.go | grep -v '_test\.go$' | sort); do
    printf '%s\n' "$f"
    cat -- "$f"
  done)
}
if [ -z "$EXEC_AGENT" ]; then
  command -v go >/dev/null || die "go is not installed (the terminal relay guest/tty-relay is Go)"
  export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
  TTY_RELAY_HASH=$(tty_relay_sources | sha256sum | cut -d' ' -f1)
fi
# The agent port's relay (guest/port-relay: Go, static, ours), hashed the same way.
PORT_RELAY_DIR=$GUEST_DIR/port-relay
if [ -z "$EXEC_AGENT" ]; then
  PORT_RELAY_HASH=$(TTY_RELAY_DIR=$PORT_RELAY_DIR tty_relay_sources | sha256sum | cut -d' ' -f1)
fi
pkg_version() { dpkg-query -W -f='${Version}' "$1"; }

# The kernel made for the job (the default): built once per machine and cached by a hash of its
# inputs; that hash names its directory and is one of the image's inputs.
TUNED_KERNEL_DIR=
if [ -z "$EXEC_AGENT" ]; then
  TUNED_KERNEL_DIR=${GUEST_KERNEL_DIR:-$("$GUEST_DIR/kernel/build.sh" | tail -n1)}
  [ -f "$TUNED_KERNEL_DIR/vmlinux" ] || die "guest/kernel/build.sh gave no vmlinux in $TUNED_KERNEL_DIR"
fi

KERNEL_PKG=${GUEST_KERNEL_PACKAGE:-$(apt-cache depends linux-image-amd64 2>/dev/null |
  sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)}
[ -n "$KERNEL_PKG" ] || die "cannot tell which kernel linux-image-amd64 depends on (apt-get update?)"
KERNEL_DEB_VERSION=$(apt-cache policy "$KERNEL_PKG" | sed -n 's/^ *Candidate: //p')
[ -n "$KERNEL_DEB_VERSION" ] && [ "$KERNEL_DEB_VERSION" != "(none)" ] ||
  die "no candidate version of $KERNEL_PKG"
KVER=${KERNEL_PKG#linux-image-}

BUSYBOX_BIN=/bin/busybox
CRUN_BIN=$(readlink -f "$(command -v crun)")
IP_BIN=$(readlink -f /usr/bin/ip 2>/dev/null || readlink -f /sbin/ip)

# Libraries every dynamic binary links (ldd's resolved paths, plus the program interpreter).
libs_of() {
  ldd "$1" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}'
}
LIBS=()
if [ -z "$EXEC_AGENT" ]; then
  mapfile -t LIBS < <(for b in "$CRUN_BIN" "$NODE_BIN" "$IP_BIN"; do libs_of "$b"; done | sort -u)
else
  # A static agent: nothing to link. (ldd prints "not a dynamic executable" and fails.)
  ! ldd "$EXEC_AGENT" >/dev/null 2>&1 || die "GUEST_EXEC_AGENT=$EXEC_AGENT is not static"
fi

# The Debian package (and version) owning a file; the file's sha256 when no package does.
owner_of() {
  local f=$1 p
  p=$(dpkg -S "$f" 2>/dev/null | head -n1 | cut -d: -f1) ||
    true
  if [ -z "$p" ]; then
    p=$(dpkg -S "$(readlink -f "$f")" 2>/dev/null | head -n1 | cut -d: -f1) || true
  fi
  if [ -n "$p" ]; then
    echo "pkg $p=$(dpkg-query -W -f='${Version}' "$p:amd64" 2>/dev/null || pkg_version "$p")"
  else
    echo "file $f sha256=$(sha "$f")"
  fi
}

{
  echo "builder sha256=$(sha "$GUEST_DIR/build.sh")"
  echo "init $(basename "$INIT_FILE") sha256=$(sha "$INIT_FILE")"
  echo "agent $AGENT_SOURCE sha256=$(sha "$AGENT_BUNDLE")"
  if [ -n "$AGENT_LOADER" ]; then
    echo "agent-loader sha256=$(sha "$AGENT_LOADER") code-cache-maker sha256=$(sha "$AGENT_CODE_CACHE_MAKER") code-cache $AGENT_CODE_CACHE"
  fi
  if [ -z "$EXEC_AGENT" ]; then
    echo "node $NODE_BIN sha256=$(sha "$NODE_BIN") version=$("$NODE_BIN" --version)"
    echo "node-options $NODE_OPTIONS_GUEST"
    echo "tty-relay sources sha256=$TTY_RELAY_HASH"
    echo "port-relay sources sha256=$PORT_RELAY_HASH"
  else
    echo "exec-agent"
  fi
  echo "kernel $KERNEL_PKG=$KERNEL_DEB_VERSION"
  if [ -z "$EXEC_AGENT" ]; then echo "tuned-kernel $(basename "$TUNED_KERNEL_DIR")"; fi
  echo "busybox-static=$(pkg_version busybox-static)"
  echo "crun=$(pkg_version crun)"
  echo "iproute2=$(pkg_version iproute2)"
  echo "modules ${MODULES[*]}"
  echo "boot-modules ${BOOT_MODULES[*]}"
  echo "compression $COMPRESSION"
  if [ -z "$EXEC_AGENT" ]; then echo "erofs-utils=$(pkg_version erofs-utils) root-image uncompressed"; fi
  for l in "${LIBS[@]}"; do echo "lib $l $(owner_of "$l")"; done
} >"$WORK/inputs.txt"
HASH=$(sha256sum "$WORK/inputs.txt" | cut -c1-16)
OUT=$CACHE_ROOT/$HASH

point_current() {
  ln -sfn "$HASH" "$CACHE_ROOT/.current.tmp"
  mv -T "$CACHE_ROOT/.current.tmp" "$CACHE_ROOT/current"
  touch "$OUT" # the dir's mtime is when it was last made current: what pruning keeps by
}

# Removes all but the KEEP_IMAGES most recently used <hash> dirs (16 hex digits, nothing else),
# never the one `current` points to. Runs under the lock, after `current` is set. A VM already
# running from a removed image is unaffected (QEMU read its kernel and initrd at start); a node
# agent configured with a fixed old image dir (--guest-image-dir) is not, so keep that one current
# or raise GUEST_KEEP_IMAGES.
prune_images() {
  local cur d
  cur=$(readlink "$CACHE_ROOT/current" 2>/dev/null || true)
  # shellcheck disable=SC2012
  { ls -1td "$CACHE_ROOT"/[0-9a-f]*/ 2>/dev/null || true; } | sed 's:/*$::' | while IFS= read -r d; do
    if [ ! -L "$d" ] && [[ "$(basename "$d")" =~ ^[0-9a-f]{16}$ ]]; then echo "$d"; fi
  done | tail -n +"$((KEEP_IMAGES + 1))" | while IFS= read -r d; do
    if [ "$(basename "$d")" != "$cur" ]; then
      log "pruning old image $d"
      rm -rf -- "$d"
    fi
  done
}

if [ -f "$OUT/manifest.json" ] && [ "${GUEST_FORCE:-0}" != 1 ]; then
  log "up to date: $OUT"
  point_current
  prune_images
  echo "$OUT"
  exit 0
fi
log "building $OUT"

# --- kernel ---------------------------------------------------------------------------------
deb=$(find "$DEB_CACHE" -maxdepth 1 -name "${KERNEL_PKG}_${KERNEL_DEB_VERSION//:/%3a}_amd64.deb" | head -n1)
if [ -z "$deb" ]; then
  log "downloading $KERNEL_PKG=$KERNEL_DEB_VERSION"
  # apt's _apt user cannot write to a root-owned cache dir; download where it may, then move.
  dl=$(mktemp -d)
  chmod 777 "$dl"
  (cd "$dl" && apt-get download -q "$KERNEL_PKG=$KERNEL_DEB_VERSION" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
  f=$(find "$dl" -maxdepth 1 -name '*.deb' | head -n1)
  [ -n "$f" ] || die "apt-get download $KERNEL_PKG=$KERNEL_DEB_VERSION failed"
  # keep only the newest few kernel debs
  mv "$f" "$DEB_CACHE/"
  rmdir "$dl" 2>/dev/null || rm -rf "$dl"
  deb=$DEB_CACHE/$(basename "$f")
  # shellcheck disable=SC2012
  ls -1t "$DEB_CACHE"/*.deb | tail -n +4 | xargs -r rm -f
fi

KX=$WORK/kernel
mkdir -p "$KX"
dpkg-deb --fsys-tarfile "$deb" >"$WORK/kernel.tar"
mapfile -t kernel_members < <(tar -tf "$WORK/kernel.tar" | grep -E "^\./boot/(vmlinuz|config)-|^\./lib/modules/$KVER/(modules\.builtin(\.modinfo)?|modules\.order)$|^\./lib/modules/$KVER/kernel/.*\.ko(\.xz|\.zst)?$")
tar -xf "$WORK/kernel.tar" -C "$KX" "${kernel_members[@]}"
rm -f "$WORK/kernel.tar"
VMLINUZ=$KX/boot/vmlinuz-$KVER
[ -f "$VMLINUZ" ] || die "no boot/vmlinuz-$KVER in $deb"

# Locate every module file by name.
declare -A MODPATH MODREL
while IFS= read -r f; do
  n=$(basename "$f")
  n=${n%.xz}
  n=${n%.zst}
  n=${n%.ko}
  MODPATH[$n]=$f
done < <(find "$KX/lib/modules/$KVER/kernel" -name '*.ko*')

# Aliases of the modules we can see, for resolving softdeps such as "pre: crypto-crc32c".
declare -A ALIAS_OF
for m in "${MODULES[@]}"; do
  [ -n "${MODPATH[$m]:-}" ] || die "module $m not found in $KERNEL_PKG"
  while IFS= read -r a; do ALIAS_OF[$a]=$m; done < <(modinfo -F alias "${MODPATH[$m]}")
  ALIAS_OF[$m]=$m
done

# Dependency-ordered load list: depends (hard) and softdep "pre:" both come first.
declare -A STATE
ORDER=()
visit() { # appends $1 to ORDER after everything it needs
  local m=$1 d f deps soft
  [ "${STATE[$m]:-}" = done ] && return 0
  [ "${STATE[$m]:-}" = active ] && die "module dependency cycle at $m"
  STATE[$m]=active
  f=${MODPATH[$m]:-}
  [ -n "$f" ] || die "module $m (a dependency) not found in $KERNEL_PKG"
  deps=$(modinfo -F depends "$f" | tr ',' ' ')
  soft=$(modinfo -F softdep "$f" | sed -n 's/.*pre: *\([^:]*\)\( post:.*\)\{0,1\}$/\1/p')
  for d in $soft; do
    if [ -n "${ALIAS_OF[$d]:-}" ]; then visit "${ALIAS_OF[$d]}"; fi
  done
  for d in $deps; do visit "$d"; done
  STATE[$m]=done
  ORDER+=("$m")
}
for m in "${BOOT_MODULES[@]}"; do visit "$m"; done
BOOT_ORDER=("${ORDER[@]}")
for m in "${MODULES[@]}"; do visit "$m"; done
log "boot module load order: ${BOOT_ORDER[*]}"

# --- root filesystem ------------------------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,proc,sys,dev,run,tmp,root,var,mnt}
mkdir -p "$R/lib/modules/$KVER" "$R/var/lib" "$R/run/kata-containers"
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
ln -s ../run "$R/var/run"

cp "$BUSYBOX_BIN" "$R/bin/busybox"
while IFS= read -r applet; do
  [ -e "$R/$applet" ] || [ -L "$R/$applet" ] && continue
  mkdir -p "$R/$(dirname "$applet")"
  # relative link to /bin/busybox
  rel=$(realpath -m --relative-to="/$(dirname "$applet")" /bin/busybox)
  ln -s "$rel" "$R/$applet"
done < <("$BUSYBOX_BIN" --list-full | sort)

install_bin() { # src dest-in-image
  rm -f "$R$2"
  mkdir -p "$(dirname "$R$2")"
  cp -L "$1" "$R$2"
  chmod 0755 "$R$2"
}
if [ -z "$EXEC_AGENT" ]; then
  # Reproducible: no paths, no build id, no VCS stamp; the same sources and toolchain give the same
  # bytes.
  log "building the terminal relay (guest/tty-relay)"
  (cd "$TTY_RELAY_DIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags='-s -w -buildid=' \
    -o "$WORK/kata-tty-relay" .) >&2 || die "go build of guest/tty-relay failed"
  install_bin "$WORK/kata-tty-relay" /usr/bin/kata-tty-relay
  log "building the agent port relay (guest/port-relay)"
  (cd "$PORT_RELAY_DIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags='-s -w -buildid=' \
    -o "$WORK/kata-port-relay" .) >&2 || die "go build of guest/port-relay failed"
  install_bin "$WORK/kata-port-relay" /usr/bin/kata-port-relay
  install_bin "$NODE_BIN" /usr/bin/node
  install_bin "$CRUN_BIN" /usr/bin/crun
  install_bin "$IP_BIN" /sbin/ip # iproute2's ip (JSON output); busybox's stays as "busybox ip"
fi
for l in "${LIBS[@]}"; do
  mkdir -p "$R$(dirname "$l")"
  cp -L "$l" "$R$l"
done

# Modules keep their place under kernel/ (decompressed) so depmod and modprobe work in the guest.
for m in "${ORDER[@]}"; do
  f=${MODPATH[$m]}
  rel=${f#"$KX/lib/modules/$KVER/"}
  rel=${rel%.xz}
  rel=${rel%.zst}
  mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
  case "$f" in
  *.ko.xz) xz -dc "$f" >"$R/lib/modules/$KVER/$rel" ;;
  *.ko.zst) zstd -q -dc "$f" >"$R/lib/modules/$KVER/$rel" ;;
  *) cp "$f" "$R/lib/modules/$KVER/$rel" ;;
  esac
  MODREL[$m]=$rel
done
# load-order: paths (relative to the modules dir) the init insmods, dependencies first.
for m in "${BOOT_ORDER[@]}"; do echo "${MODREL[$m]}"; done >"$R/lib/modules/$KVER/load-order"
for m in "${ORDER[@]}"; do echo "${MODREL[$m]}"; done >"$R/lib/modules/$KVER/load-order-all"
cp "$KX/lib/modules/$KVER"/modules.builtin* "$R/lib/modules/$KVER/"
depmod -b "$R" "$KVER"
# depmod's binary indexes are for kmod; busybox modprobe reads the text files.
rm -f "$R/lib/modules/$KVER"/*.bin

cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
tty:x:5:
nogroup:x:65534:
EOF
cat >"$R/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
EOF
: >"$R/etc/resolv.conf"
echo localhost >"$R/etc/hostname"
printf '%s\n' "$NODE_OPTIONS_GUEST" >"$R/etc/kata-guest-agent.node-options"
echo "$HASH" >"$R/etc/kata-guest-image"

cp "$INIT_FILE" "$R/init"
chmod 0755 "$R/init"
if [ -n "$EXEC_AGENT" ]; then
  AGENT_PATH=/usr/bin/kata-agent
  install_bin "$EXEC_AGENT" "$AGENT_PATH"
  echo "$AGENT_PATH" >"$R/etc/kata-exec-agent"
else
  AGENT_PATH=/usr/bin/kata-guest-agent.js
  if [ -n "$AGENT_LOADER" ]; then
    install_agent_with_code_cache "$R" "$AGENT_PATH"
  else
    cp "$AGENT_BUNDLE" "$R$AGENT_PATH"
    chmod 0644 "$R$AGENT_PATH"
  fi
fi

# The kernel opens /dev/console for PID 1 before the init mounts devtmpfs.
if [ "$(id -u)" = 0 ]; then
  mknod -m 0600 "$R/dev/console" c 5 1
  mknod -m 0666 "$R/dev/null" c 1 3
fi


# --- rootfs.erofs: the root tree as a read-only erofs image, for the kernel made for the job ------
# That kernel (erofs and virtio-blk built in) boots with no initrd: root=/dev/vda ro rootfstype=erofs
# on a virtio-blk drive the node agent attaches, so the guest reads its root through the page cache
# (pages it can drop again) instead of holding the whole tree unpacked in RAM, and every VM on the
# node shares one copy in the host's page cache. Uncompressed: decompressing costs more CPU under
# TCG than reading. The stock kernel's modules stay out (only `kernel: debian` loads them, from the
# initrd). Reproducible: timestamps 0, a fixed UUID, every file owned by root.
EROFS_UUID=6b617461-2d72-6f6f-7466-732d65726f66
build_rootfs_erofs() { # root-dir out-file
  mkfs.erofs -T0 -U"$EROFS_UUID" --all-root --exclude-path=lib/modules -- "$2" "$1" >/dev/null ||
    die "mkfs.erofs failed"
}

# --- initrd: reproducible cpio --------------------------------------------------------------
find "$R" -exec touch -h -d @0 {} +
(cd "$R" && find . -mindepth 1 | sort | cpio --quiet --reproducible -o -H newc -R 0:0) >"$WORK/initrd.cpio"
case "$COMPRESSION" in
none) mv "$WORK/initrd.cpio" "$WORK/initrd" ;;
lz4) lz4 -q -l -9 "$WORK/initrd.cpio" "$WORK/initrd" && rm "$WORK/initrd.cpio" ;;
zstd) zstd -q -19 --no-check "$WORK/initrd.cpio" -o "$WORK/initrd" && rm "$WORK/initrd.cpio" ;;
gzip) gzip -n -9 -c "$WORK/initrd.cpio" >"$WORK/initrd" && rm "$WORK/initrd.cpio" ;;
esac
if [ -n "$TUNED_KERNEL_DIR" ]; then build_rootfs_erofs "$R" "$WORK/rootfs.erofs"; fi

# --- output ---------------------------------------------------------------------------------
STAGE=$WORK/out
mkdir -p "$STAGE"
mv "$WORK/initrd" "$STAGE/initrd"
if [ -n "$TUNED_KERNEL_DIR" ]; then mv "$WORK/rootfs.erofs" "$STAGE/rootfs.erofs"; fi
cp "$VMLINUZ" "$STAGE/vmlinuz"
# vmlinux: the uncompressed ELF kernel inside the bzImage. QEMU boots it directly through its PVH
# entry point (CONFIG_PVH=y), which skips the in-guest decompression of the bzImage: ~4 s under TCG.
"$NODE_BIN" -e '
const fs = require("fs");
const b = fs.readFileSync(process.argv[1]);
if (b.readUInt32LE(0x202) !== 0x53726448) throw new Error("not a bzImage");
const start = ((b[0x1f1] || 4) + 1) * 512 + b.readUInt32LE(0x248);
fs.writeFileSync(process.argv[2], b.subarray(start, start + b.readUInt32LE(0x24c)));
' "$VMLINUZ" "$WORK/payload"
case "$(head -c 6 "$WORK/payload" | od -An -tx1 | tr -d ' \n')" in
fd377a585a00) xz -dc "$WORK/payload" >"$STAGE/vmlinux" 2>/dev/null || [ -s "$STAGE/vmlinux" ] ;;
28b52ffd*) zstd -q -dc "$WORK/payload" >"$STAGE/vmlinux" ;;
1f8b*) gzip -dc "$WORK/payload" >"$STAGE/vmlinux" 2>/dev/null || [ -s "$STAGE/vmlinux" ] ;;
*) die "unknown bzImage payload compression" ;;
esac
rm -f "$WORK/payload"
[ "$(head -c 4 "$STAGE/vmlinux" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] || die "extracted vmlinux is not ELF"
cp "$KX/boot/config-$KVER" "$STAGE/config"
DEFAULT_KVER=$KVER
if [ -n "$TUNED_KERNEL_DIR" ]; then
  mkdir "$STAGE/debian"
  mv "$STAGE/vmlinux" "$STAGE/vmlinuz" "$STAGE/config" "$STAGE/debian/"
  cp "$TUNED_KERNEL_DIR/vmlinux" "$STAGE/vmlinux"
  cp "$TUNED_KERNEL_DIR/bzImage" "$STAGE/vmlinuz"
  cp "$TUNED_KERNEL_DIR/config" "$STAGE/config"
  DEFAULT_KVER=$(sed -n 's/.*"kernelRelease": *"\([^"]*\)".*/\1/p' "$TUNED_KERNEL_DIR/manifest.json")
  [ -n "$DEFAULT_KVER" ] || die "no kernelRelease in $TUNED_KERNEL_DIR/manifest.json"
fi
cp "$WORK/inputs.txt" "$STAGE/inputs.txt"
rootfs_bytes=$(du -sb --apparent-size "$R" | cut -f1)

HASH=$HASH DEBIAN_KVER=$KVER KVER=$DEFAULT_KVER TUNED=${TUNED_KERNEL_DIR:+1} KPKG="$KERNEL_PKG=$KERNEL_DEB_VERSION" COMPRESSION=$COMPRESSION \
  ROOTFS_BYTES=$rootfs_bytes AGENT_SOURCE=$AGENT_SOURCE AGENT_PATH=$AGENT_PATH MODS="${ORDER[*]}" BOOT_MODS="${BOOT_ORDER[*]}" NODE_OPTS="$NODE_OPTIONS_GUEST" \
  "$NODE_BIN" -e '
const fs = require("fs");
const d = process.argv[1];
const size = (f) => fs.statSync(`${d}/${f}`).size;
const e = process.env;
const m = {
  hash: e.HASH,
  kernelVersion: e.KVER,
  kernelPackage: e.KPKG,
  // spec.vm.kernel name -> files of this dir; "default" is the top level.
  kernels: e.TUNED
    ? { default: { release: e.KVER, source: "guest/kernel" }, debian: { release: e.DEBIAN_KVER, source: e.KPKG, dir: "debian" } }
    : { default: { release: e.KVER, source: e.KPKG } },
  nodeVersion: e.AGENT_PATH.endsWith(".js") ? process.version : "",
  agentSource: e.AGENT_SOURCE,
  agentPath: e.AGENT_PATH,
  agentNodeOptions: e.NODE_OPTS,
  initrdCompression: e.COMPRESSION,
  // The read-only root of the default kernel (a virtio-blk drive; the debian kernel boots the initrd).
  ...(e.TUNED && { rootDisk: { file: "rootfs.erofs", fsType: "erofs", kernels: ["default"] } }),
  modules: e.MODS.split(" "),
  bootModules: e.BOOT_MODS.split(" "),
  sizes: { vmlinuz: size("vmlinuz"), vmlinux: size("vmlinux"), initrd: size("initrd"), ...(e.TUNED && { rootDisk: size("rootfs.erofs") }), rootfsUncompressed: Number(e.ROOTFS_BYTES) },
  cmdline: "console=ttyS0 quiet panic=-1 tsc=reliable no_timer_check i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd",
  inputs: fs.readFileSync(`${d}/inputs.txt`, "utf8").trim().split("\n"),
};
fs.writeFileSync(`${d}/manifest.json`, JSON.stringify(m, null, 2) + "\n");
' "$STAGE"

rm -rf "$OUT"
mv -T "$STAGE" "$OUT"
point_current
prune_images
log "built $OUT: vmlinuz $(stat -c %s "$OUT/vmlinuz") bytes, initrd $(stat -c %s "$OUT/initrd") bytes ($COMPRESSION)"
echo "$OUT"

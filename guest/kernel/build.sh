#!/usr/bin/env bash
# Builds the guest kernel made for the job (everything built in, no modules) from Debian's kernel
# source package into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator/kernel/<hash>/{vmlinux,bzImage,config,manifest.json}
# and points .../kernel/current at it. <hash> covers every input: the source package's exact
# version, guest/kernel/guest.config, this script and check-config.sh, and the compiler and linker
# versions; a second run with the same inputs prints "up to date" and the directory at once.
#
# The configuration is `make allnoconfig` with guest/kernel/guest.config merged on top by the
# kernel's scripts/kconfig/merge_config.sh; the build fails, naming the option, if any line of the
# fragment did not survive into .config (a dependency missing, a name changed in a new release).
#
# Environment:
#   GUEST_KERNEL_SOURCE_PACKAGE  Debian package holding the source tarball (default linux-source-6.1,
#                                the series of the image's stock kernel, linux-image-amd64)
#   GUEST_KERNEL_JOBS            make -j (default 2); the build runs under nice -n 19
#   GUEST_KERNEL_FORCE=1         rebuild even when the cached kernel exists
#   XDG_CACHE_HOME               cache root
# The extracted source stays in .../kernel/.build/ (reused by the next build of the same package
# version); the object tree is removed after a successful build. At most 2 <hash> dirs are kept.
# Prints the kernel directory on stdout (last line).
set -euo pipefail
export LC_ALL=C

KERNEL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$KERNEL_DIR/../.." && pwd)
FRAGMENT=$KERNEL_DIR/guest.config
SOURCE_PACKAGE=${GUEST_KERNEL_SOURCE_PACKAGE:-linux-source-6.1}
JOBS=${GUEST_KERNEL_JOBS:-2}
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator/kernel
KEEP=2

log() { echo "guest/kernel/build: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[[ "$SOURCE_PACKAGE" =~ ^linux-source-[0-9]+\.[0-9]+$ ]] || die "GUEST_KERNEL_SOURCE_PACKAGE=$SOURCE_PACKAGE (linux-source-<major>.<minor>)"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "GUEST_KERNEL_JOBS=$JOBS (a number >= 1)"

# --- inputs ---------------------------------------------------------------------------------
# Cheap checks only before the cache lookup, so that a cached kernel is found in well under 2 s.
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
version=$(pkg_version "$SOURCE_PACKAGE")
tools_ok=1
for t in gcc ld make bc bison flex cpio xz; do command -v "$t" >/dev/null || tools_ok=0; done
if [ -z "$version" ] || [ "$tools_ok" = 0 ] || [ -z "$(pkg_version libelf-dev)" ]; then
  "$REPO_DIR/hack/setup.sh" "$SOURCE_PACKAGE" gcc make bc bison flex libelf-dev cpio xz-utils
  version=$(pkg_version "$SOURCE_PACKAGE")
fi
[ -n "$version" ] || die "$SOURCE_PACKAGE is not installed"
series=${SOURCE_PACKAGE#linux-source-}
tarball=/usr/src/$SOURCE_PACKAGE.tar.xz
[ -f "$tarball" ] || die "$tarball (from $SOURCE_PACKAGE) does not exist"

inputs=$(
  printf 'source-package %s=%s\n' "$SOURCE_PACKAGE" "$version"
  printf 'fragment %s\n' "$(sha256sum "$FRAGMENT" | cut -d' ' -f1)"
  printf 'build.sh %s\n' "$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
  printf 'check-config.sh %s\n' "$(sha256sum "$KERNEL_DIR/check-config.sh" | cut -d' ' -f1)"
  printf 'gcc %s\n' "$(gcc --version | head -n1)"
  printf 'ld %s\n' "$(ld --version | head -n1)"
)
hash=$(printf '%s\n' "$inputs" | sha256sum | cut -c1-16)
out=$CACHE_ROOT/$hash

# Atomic: a reader sees the old kernel or the new one, never no `current`.
point_current() {
  ln -sfn "$hash" "$CACHE_ROOT/.current.tmp"
  mv -T "$CACHE_ROOT/.current.tmp" "$CACHE_ROOT/current"
}

if [ -z "${GUEST_KERNEL_FORCE:-}" ] && [ -f "$out/manifest.json" ] && [ -f "$out/vmlinux" ]; then
  point_current
  log "up to date"
  echo "$out"
  exit 0
fi

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
flock 9

# --- source ---------------------------------------------------------------------------------
build_root=$CACHE_ROOT/.build
src=$build_root/src-$version
if [ ! -f "$src/.extracted" ]; then
  rm -rf "$build_root"
  mkdir -p "$src"
  log "extracting $tarball ($SOURCE_PACKAGE=$version)"
  tar -xf "$tarball" -C "$src" --strip-components=1
  touch "$src/.extracted"
fi
obj=$build_root/obj-$hash
rm -rf "$obj"
mkdir -p "$obj"

# Fixed build identity, so the same inputs give the same uname -v: the date of the source
# package's changelog entry (a date, because usr/gen_initramfs.sh parses it with date -d).
stamp=$(zcat "/usr/share/doc/$SOURCE_PACKAGE/changelog.Debian.gz" 2>/dev/null | sed -n 's/^ -- .*>  //p' | head -n1 || true)
export KBUILD_BUILD_TIMESTAMP=${stamp:-1970-01-01 00:00:00 UTC}
export KBUILD_BUILD_USER=kata-sandbox-operator
export KBUILD_BUILD_HOST=guest-kernel
kmake=(nice -n 19 make -C "$src" O="$obj" ARCH=x86_64 -j"$JOBS")

# --- configuration --------------------------------------------------------------------------
log "configuring: allnoconfig + $(basename "$FRAGMENT")"
"${kmake[@]}" -s allnoconfig
# -n: options the fragment makes visible start from "no" too (allnoconfig), not their defaults.
(cd "$src" && nice -n 19 scripts/kconfig/merge_config.sh -n -O "$obj" "$obj/.config" "$FRAGMENT") \
  >"$obj/merge_config.log" 2>&1 || {
  cat "$obj/merge_config.log" >&2
  die "merge_config.sh failed"
}

# Every option of the fragment must be in the result (guest/kernel/check-config.sh names the lost).
"$KERNEL_DIR/check-config.sh" "$FRAGMENT" "$obj/.config" || die "the final .config lacks options of $(basename "$FRAGMENT") (above)"

# --- build ----------------------------------------------------------------------------------
log "building vmlinux and bzImage (make -j$JOBS under nice -n 19)"
start=$(date +%s)
"${kmake[@]}" -s vmlinux bzImage >"$obj/build.log" 2>&1 || {
  tail -n 40 "$obj/build.log" >&2
  die "kernel build failed (log: $obj/build.log)"
}
seconds=$(($(date +%s) - start))
release=$(cat "$obj/include/config/kernel.release")

stage=$CACHE_ROOT/.stage-$hash
rm -rf "$stage"
mkdir -p "$stage"
cp "$obj/vmlinux" "$stage/vmlinux"
cp "$obj/arch/x86/boot/bzImage" "$stage/bzImage"
cp "$obj/.config" "$stage/config"
printf '%s\n' "$inputs" >"$stage/inputs.txt"
STAGE="$stage" SERIES="$series" node -e '
  const [hash, release, pkg, version, seconds, jobs] = process.argv.slice(1);
  const fs = require("fs");
  const size = (f) => fs.statSync(process.env.STAGE + "/" + f).size;
  process.stdout.write(JSON.stringify({
    hash, kernelRelease: release, sourcePackage: `${pkg}=${version}`, series: process.env.SERIES,
    config: "allnoconfig + guest/kernel/guest.config", buildSeconds: Number(seconds), buildJobs: Number(jobs),
    vmlinuxBytes: size("vmlinux"), bzImageBytes: size("bzImage"),
  }, null, 2) + "\n");
' "$hash" "$release" "$SOURCE_PACKAGE" "$version" "$seconds" "$JOBS" >"$stage/manifest.json.tmp"
mv "$stage/manifest.json.tmp" "$stage/manifest.json"
rm -rf "$out"
mv "$stage" "$out"
rm -rf "$obj"
point_current
log "built $release in ${seconds}s"

# --- keep at most $KEEP kernels (the current one always) --------------------------------------
mapfile -t old < <(cd "$CACHE_ROOT" && ls -1dt -- */ 2>/dev/null | sed 's#/$##' | grep -E '^[0-9a-f]{16}$' | grep -vxF "$hash" | tail -n +"$KEEP")
for d in "${old[@]}"; do
  log "removing old kernel $d"
  rm -rf "${CACHE_ROOT:?}/$d"
done

echo "$out"

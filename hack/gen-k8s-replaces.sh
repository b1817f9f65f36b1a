#!/usr/bin/env bash
# Pins k8s.io/kubernetes in a Go module and adds a replace line for every staging module that
# the tagged k8s.io/kubernetes go.mod replaces with a local ./staging/ path (Go ignores those
# replaces in a dependency). Generated from the tagged go.mod, never typed by hand:
#   hack/gen-k8s-replaces.sh <module-dir> <k8s-version>      e.g. hack/controlplane v1.37.2
# A staging module k8s.io/<x> at v1.<minor>.<patch> is tagged k8s.io/<x> v0.<minor>.<patch>.
set -euo pipefail
dir=${1:?usage: gen-k8s-replaces.sh <module-dir> <k8s-version>}
version=${2:?usage: gen-k8s-replaces.sh <module-dir> <k8s-version>}
[[ $version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "gen-k8s-replaces: bad version $version" >&2; exit 2; }
staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

gomod=$(go mod download -json "k8s.io/kubernetes@${version}" | jq -r '.GoMod')
[ -s "$gomod" ] || { echo "gen-k8s-replaces: no go.mod for k8s.io/kubernetes@${version}" >&2; exit 1; }

mapfile -t staging < <(go mod edit -json "$gomod" |
  jq -r '.Replace[]? | select(.New.Path | startswith("./staging/")) | .Old.Path' | sort -u)
[ "${#staging[@]}" -gt 0 ] || { echo "gen-k8s-replaces: no staging replaces found in $gomod" >&2; exit 1; }

args=("-require=k8s.io/kubernetes@${version}")
for m in "${staging[@]}"; do
  args+=("-replace=${m}=${m}@${staging_version}")
done
(cd "$dir" && go mod edit "${args[@]}")
echo "gen-k8s-replaces: pinned k8s.io/kubernetes ${version}, ${#staging[@]} staging modules at ${staging_version}" >&2

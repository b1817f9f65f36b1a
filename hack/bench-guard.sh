#!/usr/bin/env bash
# Refuses to benchmark on a control plane holding what an earlier run left (KataSandboxes, or
# namespaces beyond the system ones): figures taken beside leftovers measure the leftovers too.
# A plane that is not up is clean: the benchmarks start their own.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kubeconfig=$("$REPO/hack/controlplane.sh" status 2>/dev/null) || exit 0
k() { kubectl --kubeconfig "$kubeconfig" --request-timeout=30s "$@"; }
left=()
if k get crd katasandboxes.kata.sandbox.io >/dev/null 2>&1; then
  mapfile -t sandboxes < <(k get katasandboxes -A -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name --no-headers)
  left+=("${sandboxes[@]/#/katasandbox }")
fi
mapfile -t namespaces < <(k get namespaces -o name |
  grep -v -E '^namespace/(default|kube-system|kube-public|kube-node-lease|kata-system)$' || true)
left+=("${namespaces[@]}")
if [ "${#left[@]}" -gt 0 ] && [ -n "${left[0]}" ]; then
  echo "bench-guard: the control plane ($kubeconfig) holds objects from earlier runs:" >&2
  printf '  %s\n' "${left[@]:0:20}" >&2
  [ "${#left[@]}" -gt 20 ] && echo "  … and $((${#left[@]} - 20)) more" >&2
  echo "bench-guard: remove them, or start from a fresh plane: hack/controlplane.sh down" >&2
  exit 1
fi

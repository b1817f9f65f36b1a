#!/usr/bin/env bash
# `make demo-cluster`: the product as a user installs it, on the single-node cluster of
# hack/cluster.sh (make cluster) with the image `make image` pushed to its registry: deploy/
# through hack/cluster/overlay (only the image differs), the busybox root filesystem the README
# prepares, the sample KataSandbox, and its QEMU started by the node agent Pod.
#
# It leaves everything running and says how to look and how to stop. DEMO_EXIT=1: undeploy and
# stop the cluster once the sample is Ready (the host is left as before `make cluster`).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OVERLAY="$REPO/hack/cluster/overlay"
ROOTFS=/var/lib/kata-rootfs/busybox

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

KUBECONFIG=$("$REPO/hack/cluster.sh" kubeconfig)
export KUBECONFIG

say "kubectl apply --server-side -k hack/cluster/overlay (deploy/ with the local image)"
kubectl apply --server-side -k "$OVERLAY" >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/katasandboxes.kata.sandbox.io >/dev/null
kubectl -n kata-system rollout status deployment/kata-controller --timeout=300s
kubectl -n kata-system rollout status daemonset/kata-node-agent --timeout=300s
kubectl -n kata-system get pods -o wide

say "a busybox root filesystem at $ROOTFS (as the README prepares it)"
made_rootfs=0
if [ ! -e "$ROOTFS/bin/sh" ]; then
  mkdir -p "$ROOTFS/bin"
  cp /bin/busybox "$ROOTFS/bin/"
  (cd "$ROOTFS/bin" && for a in $(./busybox --list); do [ "$a" = busybox ] || ln -s busybox "$a"; done)
  made_rootfs=1
fi

say "kubectl apply --server-side -k deploy/samples/"
kubectl apply --server-side -k "$REPO/deploy/samples" >/dev/null
kubectl wait --for=condition=Ready ksb/busybox --timeout=5m
kubectl get ksb -o wide
pid=$(kubectl get ksb busybox -o jsonpath='{.status.vm.pid}')
echo "QEMU pid $pid, cgroup $(grep memory /proc/"$pid"/cgroup | cut -d: -f3), started by $(kubectl -n kata-system get pods -l app.kubernetes.io/name=kata-node-agent -o name)"

if [ "${DEMO_EXIT:-0}" = 1 ]; then
  say "make undeploy; make cluster-down"
  make -C "$REPO" --no-print-directory undeploy DEPLOY_DIR="$OVERLAY"
  [ "$made_rootfs" = 0 ] || rm -rf "$ROOTFS"
  "$REPO/hack/cluster.sh" down
  exit 0
fi

cat <<EOF

The cluster keeps running. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl describe ksb busybox
  kubectl -n kata-system delete pod -l app.kubernetes.io/name=kata-node-agent   # the VM keeps running, adopted
Stop it:
  make undeploy DEPLOY_DIR=hack/cluster/overlay KUBECONFIG=$KUBECONFIG
  make cluster-down
EOF

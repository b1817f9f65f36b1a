#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for the product as users install it
# (issue 16): the control plane of hack/controlplane.sh in cluster mode, plus containerd and runc
# (Debian's), kubelet, kube-scheduler, kube-controller-manager and kube-proxy built from Go
# modules (hack/cluster/, the same Kubernetes version as the API server), a bridge CNI network in
# a private range without masquerading, a pause image made here, and a registry on 127.0.0.1 that
# containerd trusts.
#
#   hack/cluster.sh up           start it (no-op if up); last line: admin kubeconfig path
#   hack/cluster.sh down         stop it and leave the host as it was (no-op if down)
#   hack/cluster.sh status       exit 0 + kubeconfig path when up, 1 when not
#   hack/cluster.sh kubeconfig   print the admin kubeconfig path (fails when down)
#   hack/cluster.sh registry     print the registry's host:port
#   hack/cluster.sh build        build the node binaries and the pause image's program
#
# Environment:
#   XDG_CACHE_HOME            cache root (default ~/.cache); binaries, registry data
#   KATA_CLUSTER_DIR          state folder (default <cache>/kata-sandbox-operator/cluster)
#   KATA_CLUSTER_REGISTRY_PORT  the registry's port on 127.0.0.1 (default 5055)
#   KATA_CLUSTER_KUBELET_ARGS   further kubelet flags, split on spaces (e.g. --v=4)
#
# Everything `up` changes on the host is written down first (state/host-before), and `down`
# puts it back: processes, mounts, cgroups (kata-cluster/ in every hierarchy), the sysctls the
# kubelet and the bridge plugin set, the bridge, kube-proxy's iptables rules, network
# namespaces, and the directories the kubelet and containerd insist on (/var/log/pods,
# /var/log/containers, /run/containerd).
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE="$REPO/hack/cluster"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator"
STATE="${KATA_CLUSTER_DIR:-$CACHE/cluster}"
RUN=/run/kata-cluster
LOCK="$CACHE/cluster.flock"
REGISTRY_PORT="${KATA_CLUSTER_REGISTRY_PORT:-5055}"
REGISTRY="127.0.0.1:$REGISTRY_PORT"
NODE=kata-node
BRIDGE=kata-cni0
POD_CIDR=10.244.77.0/24
NODE_IP=10.244.77.1
CNI_NETWORK=kata-cluster-pods
CGROUP_ROOT=kata-cluster
# Where deploy/'s node agent puts each VM (its VM_CGROUP_PARENT): down stops the VMs it started
# there, which are outside the kubelet's cgroups and so outlive their Pods by design.
VM_CGROUP_PARENT=kata-sandboxes
PAUSE_IMAGE="$REGISTRY/pause:3.10"
# What the kubelet (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops) and the bridge
# plugin (net.ipv4.ip_forward) change.
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward)
# Host directories the kubelet and containerd insist on, and those deploy/'s DaemonSet makes
# (hostPath DirectoryOrCreate); down removes each one that did not exist before up (children
# before parents).
HOST_DIRS=(/var/log/pods /var/log/containers /run/containerd /run/netns /var/lib/cni/results /var/lib/cni
  /run/kata-containers /var/lib/kata-node-agent /var/log/kata-sandboxes /var/lib/kata-rootfs /srv
  /etc/cni/net.d /etc/cni /opt/cni/bin /opt/cni)
# Mounts whose propagation up makes shared: the kubelet refuses Bidirectional and HostToContainer
# volumes on a private mount (hosts without systemd keep / private).
SHARED_MOUNTS=(/ /sys/fs/cgroup)
export KATA_CP_DIR="$STATE/plane" KATA_CP_ADDRESS="$NODE_IP" KATA_CP_CLUSTER=1

log() { echo "cluster: $*" >&2; }
# A command that fails outside a condition ends the script (set -e): say which one.
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
die() {
  log "$*"
  exit 1
}

# --- binaries ------------------------------------------------------------------------------

bin_dir() {
  local k8s hash
  k8s=$(cd "$MODULE" && go mod edit -json | jq -r '.Require[] | select(.Path == "k8s.io/kubernetes") | .Version')
  hash=$(cat "$MODULE/go.mod" "$MODULE/go.sum" "$MODULE"/cmd/*/main.go | sha256sum | cut -c1-12)
  echo "$CACHE/bin/node-$k8s-$hash"
}

build() {
  local dir tmp start k8s pkg=k8s.io/component-base/version
  dir=$(bin_dir)
  [ -x "$dir/kubelet" ] && return 0
  mkdir -p "$CACHE/bin"
  exec 7>"$CACHE/bin/.node-build.lock"
  flock 7
  if [ -x "$dir/kubelet" ]; then exec 7>&- && return 0; fi
  k8s=$(basename "$dir" | cut -d- -f2)
  log "building kubelet, kube-scheduler, kube-controller-manager, kube-proxy and pause into $dir"
  start=$(date +%s)
  tmp=$(mktemp -d "$CACHE/bin/.node-build.XXXXXX")
  if ! (cd "$MODULE" && CGO_ENABLED=0 go build -trimpath \
    -ldflags="-s -w -X $pkg.gitVersion=$k8s -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
    -o "$tmp/" ./cmd/...) >&2; then
    rm -rf "$tmp"
    die "build failed"
  fi
  chmod 755 "$tmp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  exec 7>&-
  log "built in $(($(date +%s) - start))s"
}

# --- host facts ----------------------------------------------------------------------------

cgroup_mounts() { # every cgroup hierarchy's mount point
  awk '$9 == "cgroup" || $9 == "cgroup2" { print $5 }' /proc/self/mountinfo | sort -u
}

need() { # the host features a node needs, each refused with its reason
  local m
  command -v containerd >/dev/null || die "containerd is not installed (make setup installs it)"
  command -v runc >/dev/null || die "runc is not installed (make setup installs it)"
  [ -x /usr/lib/cni/bridge ] || die "the CNI bridge plugin is missing (containernetworking-plugins)"
  command -v docker-registry >/dev/null || die "docker-registry is not installed"
  command -v iptables-restore >/dev/null || die "iptables is not installed"
  [ -e /dev/kmsg ] || die "/dev/kmsg is missing: the kubelet's OOM watcher needs it"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || die "no overlay filesystem: containerd's snapshotter needs it"
  m=$(cgroup_mounts)
  [ -n "$m" ] || die "no cgroup hierarchy is mounted"
  ip link show "$BRIDGE" >/dev/null 2>&1 && [ ! -e "$STATE/host-before" ] &&
    die "a link $BRIDGE exists that this script did not make"
  return 0
}

propagation() { # mount point: shared, slave or private, from its mountinfo line
  awk -v m="$1" '$5 == m { p = "private"; for (i = 7; $i != "-"; i++) { if ($i ~ /^shared:/) p = "shared"; else if ($i ~ /^master:/ && p != "shared") p = "slave" } print p; exit }' /proc/self/mountinfo
}

record_host() { # what down restores
  local s d m h
  mkdir -p "$STATE"
  {
    for s in "${SYSCTLS[@]}"; do echo "sysctl $s=$(sysctl -n "$s")"; done
    for d in "${HOST_DIRS[@]}"; do
      if [ -e "$d" ]; then echo "existed $d"; fi
    done
    for m in "${SHARED_MOUNTS[@]}"; do echo "propagation $m $(propagation "$m")"; done
    for h in $(cgroup_mounts); do
      [ -d "$h/$VM_CGROUP_PARENT" ] || continue
      echo "cgroup $h/$VM_CGROUP_PARENT"
      find "$h/$VM_CGROUP_PARENT" -mindepth 1 -maxdepth 1 -type d | sed 's/^/cgroup /'
    done
    kube_chains | sed 's/^/chain /'
    # A freshly booted host has no /run/netns until a namespace is made: not an error.
    if [ -d /run/netns ]; then ls /run/netns | sed 's/^/netns /'; fi
  } >"$STATE/host-before.tmp"
  mv "$STATE/host-before.tmp" "$STATE/host-before"
}

kube_chains() { # "<iptables|ip6tables> <table> <chain>" for every KUBE-* chain (the kubelet's, kube-proxy's)
  local cmd
  for cmd in iptables ip6tables; do
    "$cmd-save" 2>/dev/null | awk -v cmd="$cmd" '/^\*/ { t = substr($1, 2) } /^:KUBE-/ { print cmd, t, substr($1, 2) }'
  done
}

remove_kube_chains() { # those up made: their rules, the jumps to them from built-in chains, then the chains
  local cmd table chain b n new
  new=$(kube_chains | while read -r cmd table chain; do
    grep -qxF "chain $cmd $table $chain" "$STATE/host-before" || echo "$cmd $table $chain"
  done)
  [ -n "$new" ] || return 0
  while read -r cmd table chain; do "$cmd" -t "$table" -F "$chain" 2>/dev/null || true; done <<<"$new"
  while read -r cmd table chain; do
    for b in INPUT OUTPUT FORWARD PREROUTING POSTROUTING; do
      # by rule number, highest first (the rule text may hold quoted comments)
      # (a table without this built-in chain lists nothing)
      { "$cmd" -t "$table" -L "$b" -n --line-numbers 2>/dev/null || true; } | awk -v c="$chain" '$2 == c { print $1 }' |
        sort -rn | while read -r n; do "$cmd" -t "$table" -D "$b" "$n" || true; done
    done
  done <<<"$new"
  while read -r cmd table chain; do
    "$cmd" -t "$table" -X "$chain" 2>/dev/null || log "warning: $cmd -t $table -X $chain failed"
  done <<<"$new"
}

share_mounts() {
  local m
  for m in "${SHARED_MOUNTS[@]}"; do
    if [ "$(propagation "$m")" = private ]; then mount --make-shared "$m"; fi
  done
}

# --- processes -----------------------------------------------------------------------------

our_pid() { # name: its pid while alive and still ours (its command line names our state or run dir)
  local f="$STATE/$1.pid" pid
  [ -s "$f" ] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE "^(--[a-z-]+=)?($STATE|$RUN)/" || return 1
  echo "$pid"
}

start_bg() { # name binary args...
  local name=$1
  shift
  setsid "$@" </dev/null >"$STATE/logs/$name.log" 2>&1 7>&- 8>&- 9>&- &
  echo $! >"$STATE/$name.pid"
}

stop_pid() { # name [signal]
  local pid i
  pid=$(our_pid "$1") || return 0
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.2
}

wait_until() { # name seconds command...
  local name=$1 deadline=$(($(date +%s) + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    # kill -0 on our own child's pid (not our_pid: right after the fork the child is still this
    # shell, its command line not yet the daemon's; and a child not waited for keeps its pid)
    if ! kill -0 "$(<"$STATE/$name.pid")" 2>/dev/null; then
      log "$name exited; last lines of $STATE/logs/$name.log:"
      tail -n 30 "$STATE/logs/$name.log" >&2 || true
      return 1
    fi
    if (($(date +%s) >= deadline)); then
      log "$name not ready after ${2}s; last lines of $STATE/logs/$name.log:"
      tail -n 30 "$STATE/logs/$name.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

free_port() {
  node -e 'const s=require("node:net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# --- pieces --------------------------------------------------------------------------------

start_registry() {
  local data="$CACHE/cluster-registry"
  mkdir -p "$data"
  cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $data
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
  start_bg registry docker-registry serve "$STATE/registry.yml"
  wait_until registry 30 curl -sf --max-time 2 "http://$REGISTRY/v2/"
}

# A one-layer OCI image holding the pause program, made with umoci and pushed with skopeo.
push_pause() {
  local bin work
  curl -sf --max-time 5 "http://$REGISTRY/v2/pause/manifests/3.10" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' >/dev/null && return 0
  bin=$(bin_dir)
  work=$(mktemp -d "$STATE/pause.XXXXXX")
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:3.10"
  umoci unpack --rootless --image "$work/layout:3.10" "$work/bundle" >/dev/null
  install -m 0755 "$bin/pause" "$work/bundle/rootfs/pause"
  umoci repack --image "$work/layout:3.10" "$work/bundle"
  umoci config --image "$work/layout:3.10" --config.entrypoint /pause --config.user 65535:65535 \
    --architecture amd64 --os linux
  skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:3.10" "docker://$PAUSE_IMAGE"
  rm -rf "$work"
}

write_cni() {
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-kata-cluster.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "loopback" }
  ]
}
EOF
}

make_bridge() { # the API server binds the bridge's address, so it exists before the plane
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

start_containerd() {
  mkdir -p "$STATE/containerd/root" "$STATE/containerd/certs.d/$REGISTRY" "$RUN/containerd"
  cat >"$STATE/containerd/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
  cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$RUN/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$RUN/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The machine has no CAP_SYS_RESOURCE to lower a process's oom_score_adj.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$STATE/containerd/certs.d"
EOF
  start_bg containerd containerd --config "$STATE/containerd/config.toml"
  wait_until containerd 60 test -S "$RUN/containerd/containerd.sock"
}

kubeconfig_user() { # file CN [O...]
  "$REPO/hack/controlplane.sh" kubeconfig-for-user "$@"
}

start_control_components() {
  local bin kc
  bin=$(bin_dir)
  kc=$(<"$STATE/admin.kubeconfig.path")
  # The API server's client identity towards kubelets (logs, exec) may use their API.
  kubectl --kubeconfig "$kc" apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kata-cluster:apiserver-kubelet-client
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kubelet-api-admin
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: kube-apiserver-kubelet-client
EOF
  start_bg scheduler "$bin/kube-scheduler" \
    --kubeconfig="$(kubeconfig_user kube-scheduler system:kube-scheduler)" \
    --bind-address=127.0.0.1 --secure-port="$(free_port)" --v=1
  start_bg controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$(kubeconfig_user kube-controller-manager system:kube-controller-manager)" \
    --bind-address=127.0.0.1 --secure-port="$(free_port)" \
    --service-account-private-key-file="$KATA_CP_DIR/pki/sa.key" \
    --root-ca-file="$KATA_CP_DIR/pki/ca.crt" --use-service-account-credentials=true \
    --controllers='*,-node-ipam-controller' --v=1
  # each holds its leader Lease once it works
  wait_until scheduler 60 has_lease kube-scheduler
  wait_until controller-manager 60 has_lease kube-controller-manager
}

has_lease() {
  kubectl --kubeconfig "$(<"$STATE/admin.kubeconfig.path")" -n kube-system get lease "$1" \
    -o jsonpath='{.spec.holderIdentity}' 2>/dev/null | grep -q .
}

make_cgroup_root() { # the kubelet wants its cgroupRoot to exist in every hierarchy
  local h
  for h in $(cgroup_mounts); do
    mkdir -p "$h/$CGROUP_ROOT"
    # a v1 cpuset cgroup starts empty: no process could join it
    if [ -e "$h/$CGROUP_ROOT/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" >"$h/$CGROUP_ROOT/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h/$CGROUP_ROOT/cpuset.mems"
    fi
  done
}

start_kubelet() {
  local bin
  bin=$(bin_dir)
  make_cgroup_root
  mkdir -p "$STATE/kubelet/root" "$STATE/kubelet/pki"
  cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $KATA_CP_DIR/pki/client-ca.crt }
authorization: { mode: Webhook }
address: $NODE_IP
port: $(free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
containerRuntimeEndpoint: unix://$RUN/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
resolvConf: ""
clusterDomain: cluster.local
maxPods: 30
serializeImagePulls: false
# No eviction and no image garbage collection: the machine is shared with the tests.
evictionHard: { memory.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%" }
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  local extra=()
  read -ra extra <<<"${KATA_CLUSTER_KUBELET_ARGS:-}"
  start_bg kubelet "$bin/kubelet" --config="$STATE/kubelet/config.yaml" "${extra[@]}" \
    --kubeconfig="$(kubeconfig_user kubelet "system:node:$NODE" system:nodes)" \
    --hostname-override="$NODE" --node-ip="$NODE_IP" \
    --root-dir="$STATE/kubelet/root" --cert-dir="$STATE/kubelet/pki" --v=1
}

node_ready() {
  kubectl --kubeconfig "$(<"$STATE/admin.kubeconfig.path")" get node "$NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

start_kube_proxy() {
  local bin
  bin=$(bin_dir)
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $(kubeconfig_user kube-proxy system:kube-proxy)
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
nodePortAddresses: [$NODE_IP/32]
iptables:
  localhostNodePorts: false
# Zeros: kube-proxy leaves the host's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  start_bg kube-proxy "$bin/kube-proxy" --config="$STATE/kube-proxy.yaml" --v=1
}

kubernetes_service_ready() { # kube-proxy wrote the rule for the kubernetes Service
  iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q 'default/kubernetes:https'
}

is_up() {
  [ -s "$STATE/admin.kubeconfig.path" ] && our_pid kubelet >/dev/null && our_pid containerd >/dev/null &&
    "$REPO/hack/controlplane.sh" status >/dev/null 2>&1 && node_ready
}

# --- teardown ------------------------------------------------------------------------------

kill_cgroup_tree() { # every process in kata-cluster/ of every hierarchy, then the cgroups
  local h pass
  for pass in 1 2 3; do
    for h in $(cgroup_mounts); do
      [ -d "$h/$CGROUP_ROOT" ] || continue
      find "$h/$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    done
    sleep 0.3
  done
  for h in $(cgroup_mounts); do
    [ -d "$h/$CGROUP_ROOT" ] || continue
    find "$h/$CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$h/$CGROUP_ROOT" ] && log "warning: $h/$CGROUP_ROOT could not be removed"
  done
  return 0
}

kill_vms() { # the VMs the installed node agent started while up, and their cgroups
  local h c pass
  [ -e "$STATE/host-before" ] || return 0
  for pass in 1 2 3; do
    for h in $(cgroup_mounts); do
      for c in "$h/$VM_CGROUP_PARENT"/*/; do
        c=${c%/}
        [ -d "$c" ] || continue
        grep -qxF "cgroup $c" "$STATE/host-before" && continue
        xargs -r kill -KILL <"$c/cgroup.procs" 2>/dev/null || true
        if [ "$pass" = 3 ]; then rmdir "$c" 2>/dev/null || log "warning: $c could not be removed"; fi
      done
    done
    sleep 0.3
  done
  for h in $(cgroup_mounts); do
    if [ -d "$h/$VM_CGROUP_PARENT" ] && ! grep -qxF "cgroup $h/$VM_CGROUP_PARENT" "$STATE/host-before"; then
      rmdir "$h/$VM_CGROUP_PARENT" 2>/dev/null || true
    fi
  done
}

kill_shims() { # containerd's shims outlive it; ours name our socket
  local pid
  for pid in $(pgrep -f containerd-shim-runc-v2 || true); do
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$RUN/containerd/containerd.sock" &&
      kill -KILL "$pid" 2>/dev/null || true
  done
}

unmount_under() { # every mount at or below each directory, deepest first
  local d
  for d in "$@"; do
    awk -v d="$d" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
  done
}

teardown() {
  local bin line
  bin=$(bin_dir)
  stop_pid kubelet
  stop_pid kube-proxy
  stop_pid scheduler
  stop_pid controller-manager
  kill_cgroup_tree
  kill_vms
  kill_shims
  stop_pid containerd
  stop_pid registry
  if [ -x "$bin/kube-proxy" ] && iptables -t nat -S 2>/dev/null | grep -q 'KUBE-'; then
    "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || log "warning: kube-proxy --cleanup failed"
  fi
  # network namespaces containerd made (cni-…), and the bridge
  if [ -e "$STATE/host-before" ]; then
    remove_kube_chains
    for line in $(ls /run/netns 2>/dev/null || true); do
      grep -qxF "netns $line" "$STATE/host-before" && continue
      [[ $line == cni-* ]] || continue
      umount -l "/run/netns/$line" 2>/dev/null || true
      rm -f "/run/netns/$line"
    done
  fi
  ip link del "$BRIDGE" 2>/dev/null || true
  unmount_under "$STATE/containerd" "$STATE/kubelet" "$RUN" /run/containerd
  "$REPO/hack/controlplane.sh" down >/dev/null 2>&1 || log "warning: the control plane did not stop cleanly"
  rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
  if [ -e "$STATE/host-before" ]; then
    while read -r kind what; do
      if [ "$kind" = sysctl ]; then sysctl -q -w "$what" >/dev/null; fi
    done <"$STATE/host-before"
    for d in "${HOST_DIRS[@]}"; do
      grep -qxF "existed $d" "$STATE/host-before" && continue
      unmount_under "$d"
      rm -rf --one-file-system "$d"
    done
    while read -r kind what how; do
      if [ "$kind" = propagation ] && [ "$how" = private ]; then mount --make-private "$what"; fi
    done <"$STATE/host-before"
  fi
  rm -rf "$RUN" "$STATE"
}

# --- commands ------------------------------------------------------------------------------

up_failed() {
  [ "${UP_DONE:-1}" = 1 ] && return 0
  log "up failed; logs in $STATE.failed-logs"
  rm -rf "$STATE.failed-logs"
  cp -r "$STATE/logs" "$STATE.failed-logs" 2>/dev/null || true
  teardown
}

cmd_up() {
  local start kc
  start=$(date +%s)
  need
  build
  "$REPO/hack/controlplane.sh" build >/dev/null
  mkdir -p "$CACHE"
  exec 9>"$LOCK"
  flock -w 600 9 || die "timed out waiting for $LOCK"
  if is_up; then
    log "already up"
    cat "$STATE/admin.kubeconfig.path"
    return 0
  fi
  teardown # what a cluster that died left
  mkdir -p "$STATE/logs" "$RUN"
  record_host
  # From here on a failure tears down what was made; the logs are kept beside the state.
  UP_DONE=0
  trap 'up_failed' EXIT
  make_bridge
  share_mounts
  kc=$("$REPO/hack/controlplane.sh" up | tail -n1)
  echo "$kc" >"$STATE/admin.kubeconfig.path"
  start_registry
  push_pause
  write_cni
  start_containerd
  start_control_components
  start_kubelet
  wait_until kubelet 180 node_ready
  start_kube_proxy
  wait_until kube-proxy 60 kubernetes_service_ready
  UP_DONE=1
  log "up in $(($(date +%s) - start)) s (state in $STATE)"
  echo "$kc"
}

cmd_down() {
  mkdir -p "$CACHE"
  exec 9>"$LOCK"
  flock -w 600 9 || die "timed out waiting for $LOCK"
  teardown
  rm -rf "$STATE.failed-logs"
  log "down"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status)
    if is_up; then cat "$STATE/admin.kubeconfig.path"; else
      echo down >&2
      exit 1
    fi
    ;;
  kubeconfig)
    is_up || die "the cluster is not up (run: hack/cluster.sh up)"
    cat "$STATE/admin.kubeconfig.path"
    ;;
  registry) echo "$REGISTRY" ;;
  build) build && bin_dir ;;
  *)
    sed -n '2,/^set -/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

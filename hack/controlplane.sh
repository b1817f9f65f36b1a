#!/usr/bin/env bash
# A real Kubernetes control plane on this machine: kube-apiserver + etcd built from Go modules
# (hack/controlplane/, see DESIGN.md §7), started on free 127.0.0.1 ports.
#
#   hack/controlplane.sh build                      build the binaries into the cache (once per machine)
#   hack/controlplane.sh up                         start the plane (no-op if up); last line: admin kubeconfig path
#   hack/controlplane.sh down                       stop it and remove its state (no-op if down)
#   hack/controlplane.sh status                     exit 0 + kubeconfig path when up, 1 when not
#   hack/controlplane.sh kubeconfig-for <ns> <sa>   mint a client cert for ServiceAccount <ns>/<sa>; print its kubeconfig path
#   hack/controlplane.sh bin-dir                    print the folder holding the binaries (builds if needed)
#
# Environment:
#   XDG_CACHE_HOME   cache root (default ~/.cache); binaries in <root>/kata-sandbox-operator/bin/<key>/
#   KATA_CP_DIR      state folder (default <root>/kata-sandbox-operator/controlplane); one plane per folder
#   KATA_CP_READY_TIMEOUT  seconds to wait for /readyz (default 120)
#   KATA_CP_ADDRESS  the address the API server binds and advertises (default 127.0.0.1)
#   KATA_CP_CLUSTER  1: the plane of a cluster with nodes (hack/cluster.sh): Node,RBAC
#                    authorization, NodeRestriction and ServiceAccount admission, the kubernetes
#                    Service's endpoints kept, a client certificate for talking to kubelets
#
#   hack/controlplane.sh kubeconfig-for-user <file> <CN> [O...]   a client cert kubeconfig for any identity
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE="$REPO/hack/controlplane"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kata-sandbox-operator"
STATE="${KATA_CP_DIR:-$CACHE/controlplane}"
STATE="$(mkdir -p "$(dirname "$STATE")" && cd "$(dirname "$STATE")" && pwd)/$(basename "$STATE")"
# (.flock, not .lock: planes started by an earlier version of this script held .lock forever)
LOCK="$STATE.flock"
READY_TIMEOUT="${KATA_CP_READY_TIMEOUT:-120}"
ADDRESS="${KATA_CP_ADDRESS:-127.0.0.1}"
[[ $ADDRESS =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "controlplane: KATA_CP_ADDRESS must be an IPv4 address" >&2; exit 2; }
CLUSTER="${KATA_CP_CLUSTER:-0}"

log() { echo "controlplane: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# --- binaries ------------------------------------------------------------------------------

mod_version() { # the version the module pins for a path
  (cd "$MODULE" && go mod edit -json) | jq -r --arg p "$1" '.Require[] | select(.Path == $p) | .Version'
}

# -s -w, and the version stamps Kubernetes' own build sets (hack/lib/version.sh), so /version
# reports v1.x.y rather than v0.0.0-master.
ldflags() {
  local k8s pkg=k8s.io/component-base/version
  k8s=$(mod_version k8s.io/kubernetes)
  [[ $k8s =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "unexpected k8s.io/kubernetes version $k8s"
  echo "-s -w -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=${BASH_REMATCH[1]} -X $pkg.gitMinor=${BASH_REMATCH[2]}" \
    "-X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
}

bin_dir() {
  local k8s etcd hash
  k8s=$(mod_version k8s.io/kubernetes)
  etcd=$(mod_version go.etcd.io/etcd/server/v3)
  hash=$( (cat "$MODULE/go.mod" "$MODULE/go.sum" "$MODULE"/cmd/*/main.go && ldflags) | sha256sum | cut -c1-12)
  echo "$CACHE/bin/k8s-$k8s-etcd-$etcd-$hash"
}

build() {
  local dir tmp start
  dir=$(bin_dir)
  if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ]; then
    return 0
  fi
  mkdir -p "$CACHE/bin"
  exec 8>"$CACHE/bin/.build.lock"
  flock 8
  if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ]; then
    exec 8>&-
    return 0
  fi
  log "building kube-apiserver and etcd into $dir (the first build takes many minutes)"
  start=$(date +%s)
  tmp=$(mktemp -d "$CACHE/bin/.build.XXXXXX")
  if ! (cd "$MODULE" && CGO_ENABLED=0 go build -trimpath -ldflags="$(ldflags)" -o "$tmp/" \
    ./cmd/kube-apiserver ./cmd/etcd) >&2; then
    rm -rf "$tmp"
    die "build failed"
  fi
  chmod 755 "$tmp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  prune_bins "$dir"
  exec 8>&-
  log "built in $(($(date +%s) - start))s"
}

prune_bins() { # keep: remove other builds that no running process uses
  local old in_use
  in_use=$(find /proc -maxdepth 2 -name exe -exec readlink {} + 2>/dev/null | grep -F "$CACHE/bin/" || true)
  for old in "$CACHE"/bin/k8s-*; do
    [ "$old" = "$1" ] && continue
    grep -qF "$old/" <<<"$in_use" && continue
    rm -rf "$old"
  done
}

# --- state ---------------------------------------------------------------------------------

# A pid from the state folder counts only while it is alive and still one of ours (its command
# line names this state folder), so a recycled pid is never signalled.
our_pid() {
  local f="$STATE/$1.pid" pid
  [ -s "$f" ] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE/" || return 1
  echo "$pid"
}

readyz() {
  local port
  port=$(<"$STATE/apiserver.port") || return 1
  curl -sf --max-time 5 --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" \
    --key "$STATE/pki/admin.key" "https://$ADDRESS:$port/readyz" >/dev/null 2>&1
}

is_up() {
  [ -s "$STATE/admin.kubeconfig" ] && our_pid etcd >/dev/null && our_pid apiserver >/dev/null && readyz
}

stop_pid() { # name: TERM, wait up to 15 s, then KILL
  local pid i
  pid=$(our_pid "$1") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$1 (pid $pid) ignored SIGTERM; killing"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  die "$1 (pid $pid) did not exit"
}

teardown() {
  stop_pid apiserver
  stop_pid etcd
  rm -rf "$STATE"
}

free_ports() { # n: print n distinct free TCP ports on 127.0.0.1
  node -e '
    const net = require("node:net");
    const n = Number(process.argv[1]);
    const servers = [];
    const next = () => {
      if (servers.length === n) {
        console.log(servers.map((s) => s.address().port).join(" "));
        servers.forEach((s) => s.close());
        return;
      }
      const s = net.createServer();
      s.listen(0, "127.0.0.1", () => { servers.push(s); next(); });
    };
    next();' "$1"
}

# --- PKI (openssl) -------------------------------------------------------------------------

make_ca() { # name cn
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=$2" \
    -keyout "$STATE/pki/$1.key" -out "$STATE/pki/$1.crt" 2>/dev/null
}

# name ca subject [extfile]: a key and a certificate signed by the given CA
sign_cert() {
  local name=$1 ca=$2 subj=$3 ext=${4:-}
  local args=(x509 -req -sha256 -days 3650 -in "$STATE/pki/$name.csr" -CA "$STATE/pki/$ca.crt"
    -CAkey "$STATE/pki/$ca.key" -set_serial "0x$(openssl rand -hex 16)" -out "$STATE/pki/$name.crt")
  [ -n "$ext" ] && args+=(-extfile "$ext")
  openssl req -new -newkey rsa:2048 -nodes -subj "$subj" -keyout "$STATE/pki/$name.key" \
    -out "$STATE/pki/$name.csr" 2>/dev/null
  openssl "${args[@]}" 2>/dev/null
  rm -f "$STATE/pki/$name.csr"
}

make_pki() {
  mkdir -p "$STATE/pki"
  (umask 077 && make_ca ca kata-controlplane-ca && make_ca client-ca kata-controlplane-client-ca)
  # 10.0.0.1: the kubernetes Service (first address of --service-cluster-ip-range), for Pods
  printf '%s\n' "subjectAltName=IP:$ADDRESS,IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
    'extendedKeyUsage=serverAuth' 'keyUsage=digitalSignature,keyEncipherment' >"$STATE/pki/serving.ext"
  printf '%s\n' 'extendedKeyUsage=clientAuth' 'keyUsage=digitalSignature,keyEncipherment' >"$STATE/pki/client.ext"
  sign_cert apiserver ca "/CN=kube-apiserver" "$STATE/pki/serving.ext"
  sign_cert admin client-ca "/O=system:masters/CN=kata-admin" "$STATE/pki/client.ext"
  # the API server's identity towards kubelets (logs, exec, port-forward)
  sign_cert kubelet-client client-ca "/O=kata:apiserver-kubelet-clients/CN=kube-apiserver-kubelet-client" "$STATE/pki/client.ext"
  # the aggregation layer: the front proxy's own CA (never the client CA, or any client could
  # assert identities in X-Remote-* headers) and the client certificate it presents to aggregated
  # API servers such as kata-api
  (umask 077 && make_ca front-proxy-ca kata-front-proxy-ca)
  sign_cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" "$STATE/pki/client.ext"
  openssl genrsa -out "$STATE/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$STATE/pki/sa.key" -pubout -out "$STATE/pki/sa.pub" 2>/dev/null
}

write_kubeconfig() { # path user cert key
  local port
  port=$(<"$STATE/apiserver.port")
  cat >"$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kata-controlplane
  cluster:
    server: https://$ADDRESS:$port
    certificate-authority-data: $(base64 -w0 <"$STATE/pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 <"$3")
    client-key-data: $(base64 -w0 <"$4")
contexts:
- name: $2
  context:
    cluster: kata-controlplane
    user: $2
    namespace: default
current-context: $2
EOF
  chmod 600 "$1.tmp"
  mv "$1.tmp" "$1"
}

# --- processes -----------------------------------------------------------------------------

start_bg() { # name binary args...: detached into its own session, output to logs/<name>.log
  local name=$1
  shift
  # The daemons must not inherit the lock fds (8, 9), or the lock is held as long as they run.
  setsid "$@" </dev/null >"$STATE/logs/$name.log" 2>&1 8>&- 9>&- &
  echo $! >"$STATE/$name.pid"
}

wait_for() { # name timeout-seconds command...: poll until command succeeds; fail if the process died
  local name=$1 timeout=$2 deadline
  shift 2
  deadline=$(($(date +%s) + timeout))
  until "$@"; do
    if ! our_pid "$name" >/dev/null; then
      log "$name exited; last lines of $STATE/logs/$name.log:"
      tail -n 20 "$STATE/logs/$name.log" >&2 || true
      return 1
    fi
    if (($(date +%s) >= deadline)); then
      log "$name not ready after ${timeout}s; last lines of $STATE/logs/$name.log:"
      tail -n 20 "$STATE/logs/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

etcd_healthy() {
  curl -sf --max-time 2 "http://127.0.0.1:$(<"$STATE/etcd.port")/health" 2>/dev/null | grep -q '"health":"true"'
}

start_plane() {
  local bin etcd_port peer_port api_port
  bin=$(bin_dir)
  mkdir -p "$STATE/logs" "$STATE/etcd-data" "$STATE/apiserver-certs" "$STATE/kubeconfigs"
  chmod 700 "$STATE/etcd-data"
  make_pki
  read -r etcd_port peer_port api_port < <(free_ports 3)
  echo "$etcd_port" >"$STATE/etcd.port"
  echo "$api_port" >"$STATE/apiserver.port"

  start_bg etcd "$bin/etcd" --name=default --data-dir="$STATE/etcd-data" --unsafe-no-fsync \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="default=http://127.0.0.1:$peer_port" --log-level=warn
  wait_for etcd 30 etcd_healthy || return 1

  local mode=(--endpoint-reconciler-type=none --authorization-mode=RBAC --disable-admission-plugins=ServiceAccount)
  if [ "$CLUSTER" = 1 ]; then
    mode=(--endpoint-reconciler-type=lease --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction
      --kubelet-client-certificate="$STATE/pki/kubelet-client.crt" --kubelet-client-key="$STATE/pki/kubelet-client.key"
      --kubelet-preferred-address-types=InternalIP)
  fi
  start_bg apiserver "$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address="$ADDRESS" --advertise-address="$ADDRESS" --secure-port="$api_port" \
    "${mode[@]}" \
    --cert-dir="$STATE/apiserver-certs" \
    --tls-cert-file="$STATE/pki/apiserver.crt" --tls-private-key-file="$STATE/pki/apiserver.key" \
    --client-ca-file="$STATE/pki/client-ca.crt" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$STATE/pki/sa.pub" \
    --service-account-signing-key-file="$STATE/pki/sa.key" \
    --allow-privileged=true \
    --requestheader-client-ca-file="$STATE/pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$STATE/pki/front-proxy-client.crt" \
    --proxy-client-key-file="$STATE/pki/front-proxy-client.key" \
    --profiling=false --v=1
  wait_for apiserver "$READY_TIMEOUT" readyz || return 1
  write_kubeconfig "$STATE/admin.kubeconfig" kata-admin "$STATE/pki/admin.crt" "$STATE/pki/admin.key"
}

# --- commands ------------------------------------------------------------------------------

cmd_up() {
  local start attempt
  start=$(date +%s%N)
  build
  mkdir -p "$(dirname "$LOCK")"
  exec 9>"$LOCK"
  flock -w 300 9 || die "timed out waiting for $LOCK"
  if is_up; then
    if [ "$(readlink "/proc/$(our_pid apiserver)/exe")" != "$(bin_dir)/kube-apiserver" ]; then
      log "warning: the running plane uses an older build; run down and up to switch"
    fi
    log "already up"
    echo "$STATE/admin.kubeconfig"
    return 0
  fi
  teardown # leftovers of a plane that died
  for attempt in 1 2 3; do
    if start_plane; then
      log "up in $((($(date +%s%N) - start) / 1000000)) ms (state in $STATE)"
      echo "$STATE/admin.kubeconfig"
      return 0
    fi
    log "start attempt $attempt failed"
    # keep the logs of the failed attempt for the next reader
    cp -r "$STATE/logs" "$STATE.failed-logs" 2>/dev/null || true
    teardown
  done
  die "could not start the control plane (logs of the last attempt in $STATE.failed-logs)"
}

cmd_down() {
  exec 9>"$LOCK"
  flock -w 300 9 || die "timed out waiting for $LOCK"
  teardown
  rm -rf "$STATE.failed-logs"
  log "down"
}

cmd_status() {
  if is_up; then
    echo "$STATE/admin.kubeconfig"
    return 0
  fi
  echo "down" >&2
  return 1
}

cmd_kubeconfig_for() {
  local ns=${1:-} sa=${2:-} name path
  local dns_label='^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' dns_subdomain='^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'
  if ! [[ $ns =~ $dns_label ]] || [ "${#ns}" -gt 63 ]; then die "kubeconfig-for: bad namespace '$ns'"; fi
  if ! [[ $sa =~ $dns_subdomain ]] || [ "${#sa}" -gt 253 ]; then die "kubeconfig-for: bad service account name '$sa'"; fi
  is_up || die "the control plane is not up (run: hack/controlplane.sh up)"
  name="sa_${ns}_${sa}"
  path="$STATE/kubeconfigs/$name.kubeconfig"
  exec 9>"$LOCK"
  flock -w 60 9 || die "timed out waiting for $LOCK"
  if [ ! -s "$path" ]; then
    sign_cert "$name" client-ca \
      "/O=system:serviceaccounts/O=system:serviceaccounts:$ns/CN=system:serviceaccount:$ns:$sa" \
      "$STATE/pki/client.ext"
    write_kubeconfig "$path" "system:serviceaccount:$ns:$sa" "$STATE/pki/$name.crt" "$STATE/pki/$name.key"
  fi
  echo "$path"
}

cmd_kubeconfig_for_user() { # file CN [O...]
  local file=${1:-} cn=${2:-} subj="" o path
  [[ $file =~ ^[a-z0-9][a-z0-9.-]*$ ]] || die "kubeconfig-for-user: bad file name '$file'"
  [[ $cn =~ ^[a-z0-9:._-]+$ ]] || die "kubeconfig-for-user: bad CN '$cn'"
  shift 2
  for o in "$@"; do
    [[ $o =~ ^[a-z0-9:._-]+$ ]] || die "kubeconfig-for-user: bad O '$o'"
    subj+="/O=$o"
  done
  is_up || die "the control plane is not up (run: hack/controlplane.sh up)"
  path="$STATE/kubeconfigs/$file.kubeconfig"
  exec 9>"$LOCK"
  flock -w 60 9 || die "timed out waiting for $LOCK"
  if [ ! -s "$path" ]; then
    sign_cert "user_$file" client-ca "$subj/CN=$cn" "$STATE/pki/client.ext"
    write_kubeconfig "$path" "$cn" "$STATE/pki/user_$file.crt" "$STATE/pki/user_$file.key"
  fi
  echo "$path"
}

case "${1:-}" in
  build) build && bin_dir ;;
  bin-dir) build && bin_dir ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubeconfig-for) cmd_kubeconfig_for "${2:-}" "${3:-}" ;;
  kubeconfig-for-user) shift && cmd_kubeconfig_for_user "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

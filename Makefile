# kata-sandbox-operator — every target is idempotent; `make test` works from a fresh Debian machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kata-sandbox-operator
# containerd, runc, conntrack (kube-proxy), procps (pgrep, sysctl), buildah and debootstrap (make image): the cluster
# test layer (hack/cluster.sh). ca-certificates: Go fetches modules over HTTPS with the system's CA roots, which a minimal
# Debian 12 (debootstrap --variant=minbase) lacks.
APT_PACKAGES := protobuf-compiler libprotobuf-dev qemu-system-x86 busybox-static cpio crun e2fsprogs xfsprogs \
	iproute2 openssl jq curl zstd containernetworking-plugins prometheus \
	skopeo umoci docker-registry apache2-utils ca-certificates \
	containerd runc conntrack procps buildah debootstrap erofs-utils
NPM_STAMP := node_modules/.package-lock.json
# The host-filesystem helper the node agent runs (host-fs/); tests, demo and bench find it here.
export KATA_HOST_FS_BINARY := $(CACHE_DIR)/bin/kata-host-fs
# The steps of `make test` that install, generate or build before any test runs: `make test` runs
# them first, `make fresh-check` runs them in a clean Debian root (one list, so both stay in step).
PREPARE_TARGETS := setup check-gen check-manifests typecheck guest controlplane cluster-build host-fs

.PHONY: help setup deps build gen check-gen manifests check-manifests lint typecheck test unit

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install apt packages and npm dependencies (idempotent)
	@hack/setup.sh $(APT_PACKAGES)
	@$(MAKE) --no-print-directory deps

deps: $(NPM_STAMP)
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

build: deps ## compile TypeScript to dist/
	npx tsc -p tsconfig.build.json

gen: deps ## regenerate src/generated/ from proto/ (protoc + ts-proto)
	hack/gen-proto.sh src/generated

check-gen: deps ## fail if src/generated/ differs from a fresh generation
	hack/check-generated.sh

manifests: deps ## regenerate deploy/crds/ from the schema in src/crds/
	hack/gen-manifests.sh

check-manifests: deps ## fail if deploy/crds/ differs from a fresh generation
	hack/gen-manifests.sh --check

typecheck: deps ## tsc --noEmit over src, test, bench
	npx tsc --noEmit -p tsconfig.json

lint: deps ## eslint + prettier --check
	npx eslint .
	npx prettier --check .

.PHONY: host-fs
host-fs: ## build the kata-host-fs helper (Go, static) into $(CACHE_DIR)/bin/ when its sources changed
	@CACHE_DIR=$(CACHE_DIR) hack/host-fs.sh >/dev/null

.PHONY: host-fs-check
host-fs-check: ## go vet and the Go unit tests of host-fs/ and of the guest's terminal and agent port relays (guest/tty-relay/, guest/port-relay/)
	cd host-fs && go vet ./... && go test ./...
	cd guest/tty-relay && go vet ./... && go test ./...
	cd guest/port-relay && go vet ./... && go test ./...

.PHONY: test-peers
# The Kata 1.x peers (client and agent) are built by hand outside this repository: code fetched
# from public repositories, and any recipe that builds it, stays out of commits here. Tests whose
# peer is missing are skipped and say so (test/peers/peer-binaries.ts).
test-peers: deps guest host-fs controlplane ## only the peer layer: our guest agent driven by the real Kata 1.x client, our node agent with the real Kata 1.x agent (real VMs, real control plane)
	TEST_LAYERS=peers hack/run-tests.sh

.PHONY: guest
guest: deps ## build the guest VM image (the kernel made for the job, Debian's stock kernel under debian/, initrd) into $(CACHE_DIR)/guest/current; builds the kernel first when it is not cached (8 min cold)
	guest/build.sh

.PHONY: guest-kernel
guest-kernel: ## build the guest kernel made for the job (guest/kernel/guest.config, no modules) from Debian's linux-source into $(CACHE_DIR)/kernel/current (cold: about 8 minutes on 2 cores; cached by a hash of its inputs)
	guest/kernel/build.sh

.PHONY: controlplane controlplane-up controlplane-down
controlplane: ## build kube-apiserver + etcd from Go modules (once per machine) into $(CACHE_DIR)/bin/
	hack/controlplane.sh build

controlplane-up: ## start the local control plane (idempotent); prints the admin kubeconfig path
	hack/controlplane.sh up

controlplane-down: ## stop the local control plane and remove its state
	hack/controlplane.sh down

.PHONY: cluster cluster-down cluster-build demo-cluster
cluster-build: controlplane ## build kubelet, kube-scheduler, kube-controller-manager, kube-proxy and the pause program (once per machine)
	hack/cluster.sh build

cluster: setup cluster-build ## a real single-node cluster on this machine (hack/cluster.sh): containerd, kubelet, scheduler, controller-manager, kube-proxy, a registry on 127.0.0.1:5055
	hack/cluster.sh up

cluster-down: ## stop that cluster and leave the host as it was before `make cluster`
	hack/cluster.sh down

demo-cluster: cluster image ## the product as users install it: deploy/ on that cluster, a sample sandbox Ready through the installed Pods
	hack/demo-cluster.sh

unit: deps ## unit tests only
	TEST_LAYERS=unit hack/run-tests.sh

test: $(PREPARE_TARGETS) lint host-fs-check ## everything: setup, checks, guest image, control plane build, every test layer, then the demo
	hack/run-tests.sh
	$(MAKE) --no-print-directory demo DEMO_EXIT=1

.PHONY: fresh-check
fresh-check: ## run the install/generate steps of `make test` (PREPARE_TARGETS) in a clean Debian 12 root from a clone of HEAD (root)
	CACHE_DIR=$(CACHE_DIR) hack/fresh-check.sh $(PREPARE_TARGETS)

.PHONY: demo
demo: setup guest controlplane host-fs ## the whole system on this machine: control plane, controller, node agent, a sample sandbox (DEMO_EXIT=1: stop once Ready)
	DEMO_EXIT=$(DEMO_EXIT) hack/demo.sh

.PHONY: bench
BENCH_OUT := node_modules/.cache/bench
bench: deps guest controlplane host-fs ## benchmarks on the real stack: guest boot, agent RPC round trip (ours and the Kata 1.x client's), 9p security model, network, create → Running, image pulls, controller scale, kata-host-fs calls, log follow latency and read throughput through the aggregated API
	hack/bench-guard.sh
	@mkdir -p $(BENCH_OUT)
	$(MAKE) --no-print-directory bench-guest
	$(MAKE) --no-print-directory bench-agent-rpc
	@npx esbuild bench/ninep.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/ninep.mjs
	node $(BENCH_OUT)/ninep.mjs 2 300
	@npx esbuild bench/network.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/network.mjs
	node $(BENCH_OUT)/network.mjs 5 1000
	@npx esbuild bench/sandbox-create.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/sandbox-create.mjs
	KATA_REPO_ROOT=$(CURDIR) node $(BENCH_OUT)/sandbox-create.mjs 5 10
	$(MAKE) --no-print-directory bench-warm
	@npx esbuild bench/image-pull.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/image-pull.mjs
	KATA_REPO_ROOT=$(CURDIR) node $(BENCH_OUT)/image-pull.mjs 3
	$(MAKE) --no-print-directory bench-controller
	@npx esbuild bench/peers-rpc.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/peers-rpc.mjs
	node $(BENCH_OUT)/peers-rpc.mjs 300
	@npx esbuild bench/host-fs.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/host-fs.mjs
	node $(BENCH_OUT)/host-fs.mjs 200
	@npx esbuild bench/kata-api-logs.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/kata-api-logs.mjs
	KATA_REPO_ROOT=$(CURDIR) node $(BENCH_OUT)/kata-api-logs.mjs 50 3
	$(MAKE) --no-print-directory bench-kata-api

.PHONY: bench-kata-api
bench-kata-api: deps guest controlplane host-fs ## exec round trip, stdin/stdout throughput and log follow latency through the aggregated API to a real VM (ends with a bench-result line)
	@mkdir -p $(BENCH_OUT)
	@npx esbuild bench/kata-api-exec.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/kata-api-exec.mjs
	KATA_REPO_ROOT=$(CURDIR) node $(BENCH_OUT)/kata-api-exec.mjs 30 30

.PHONY: soak
SOAK_OUT := node_modules/.cache/soak
SOAK_ROUNDS ?= 300
SOAK_SEED ?=
soak: deps guest controlplane host-fs ## randomized soak with fault injection on the real stack (SOAK_ROUNDS, SOAK_SEED; SOAK_FAULTS a comma list); ends with one `soak-result {json}` line
	@mkdir -p $(SOAK_OUT)
	@npx esbuild test/soak/main.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(SOAK_OUT)/soak.mjs
	SOAK_ROUNDS=$(SOAK_ROUNDS) SOAK_SEED=$(SOAK_SEED) KATA_REPO_ROOT=$(CURDIR) node $(SOAK_OUT)/soak.mjs

.PHONY: bench-guest
GUEST_BOOTS ?= 8
GUEST_CHECKS ?= 1000
bench-guest: deps guest ## guest boot and agent Check round trip, one row per lever in one run: stock kernel + initrd on pc, the kernel made for the job, its erofs root drive (what a warm-pool VM boots), the same on microvm (what a sandbox boots: the top-level figures of the closing bench-result line)
	@mkdir -p $(BENCH_OUT)
	@npx esbuild bench/guest-boot.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/guest-boot.mjs
	node $(BENCH_OUT)/guest-boot.mjs $(GUEST_BOOTS) $(GUEST_CHECKS)

.PHONY: bench-agent-rpc
AGENT_RPC_CALLS ?= 4000
bench-agent-rpc: deps ## the agent's own CPU per call with no VM (guest side and host side, Health.Check over the real transport; what a per-call change saves, without TCG's noise; ends with a bench-result line)
	@mkdir -p $(BENCH_OUT)
	@npx esbuild bench/agent-rpc.ts bench/agent-rpc-guest.ts --bundle --platform=node --format=esm \
		--target=node20 --packages=external --log-level=warning --out-extension:.js=.mjs --outdir=$(BENCH_OUT)
	node $(BENCH_OUT)/agent-rpc.mjs $(BENCH_OUT)/agent-rpc-guest.mjs $(AGENT_RPC_CALLS)

.PHONY: bench-machine
MACHINE_BOOTS ?= 200
MACHINE_VARIANTS ?= microvm
bench-machine: deps guest guest-kernel ## consecutive boots of the tuned kernel per machine type (MACHINE_BOOTS, MACHINE_VARIANTS e.g. "microvm pc"): hangs with their reason, wall and QEMU CPU-seconds (ends with a bench-result line)
	@mkdir -p $(BENCH_OUT)
	@npx esbuild bench/machine-boots.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/machine-boots.mjs
	node $(BENCH_OUT)/machine-boots.mjs $(MACHINE_BOOTS) $(MACHINE_VARIANTS)

.PHONY: bench-warm
bench-warm: deps guest controlplane host-fs ## create → Running from a warm pool beside a cold create (ends with a bench-result line)
	@mkdir -p $(BENCH_OUT)
	@npx esbuild bench/warm-pool.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/warm-pool.mjs
	KATA_REPO_ROOT=$(CURDIR) node $(BENCH_OUT)/warm-pool.mjs $(WARM_RUNS) $(COLD_RUNS)

.PHONY: bench-controller
BENCH_CONTROLLER_SIZES ?= 2000x50 10000x500
WARM_RUNS ?= 10
COLD_RUNS ?= 3
bench-controller: deps controlplane ## controller scale only: sandboxes bound over simulated nodes, each size on a fresh private plane (BENCH_CONTROLLER_SIZES)
	@mkdir -p $(BENCH_OUT)
	@npx esbuild bench/controller-scale.ts --bundle --platform=node --format=esm --target=node20 \
		--packages=external --log-level=warning --outfile=$(BENCH_OUT)/controller-scale.mjs
	node $(BENCH_OUT)/controller-scale.mjs $(BENCH_CONTROLLER_SIZES)

# --- install and operate (docs/operations.md) ------------------------------------------------
.PHONY: deploy undeploy image
KUBECTL ?= kubectl
IMAGE ?= kata-sandbox-operator:latest
SAMPLES ?= 0
# What to apply: deploy/ itself, or an overlay of it (hack/cluster/overlay: the local cluster's image)
DEPLOY_DIR ?= deploy/
UNDEPLOY_TIMEOUT ?= 300s

deploy: ## install the operator (deploy/) into the current kubeconfig's cluster; SAMPLES=1 adds deploy/samples/
	$(KUBECTL) apply --server-side -k $(DEPLOY_DIR)
	$(KUBECTL) wait --for=condition=Established --timeout=60s crd/katasandboxes.kata.sandbox.io
	@if [ "$(SAMPLES)" = 1 ]; then $(KUBECTL) apply --server-side -k deploy/samples/; fi

# Sandboxes first, while the controller and node agents still run to stop their VMs and drop
# their finalizers; then everything deploy/ installed.
undeploy: ## remove every KataSandbox, then everything deploy/ installed, from the current cluster
	-$(KUBECTL) delete katasandboxes.kata.sandbox.io --all --all-namespaces --timeout=$(UNDEPLOY_TIMEOUT)
	$(KUBECTL) delete -k $(DEPLOY_DIR) --ignore-not-found --timeout=$(UNDEPLOY_TIMEOUT)

# Built here with buildah from base images made from Debian packages (hack/image.sh); pushed to
# the cluster's registry when hack/cluster.sh runs one. Elsewhere: docker build -t $(IMAGE) .
CLUSTER_IMAGE ?= 127.0.0.1:5055/kata-sandbox-operator:dev
image: setup ## build the container image (IMAGE) with buildah from locally made Debian bases; pushed to CLUSTER_IMAGE when the local cluster's registry is up
	@if curl -sf --max-time 2 http://$$(hack/cluster.sh registry)/v2/ >/dev/null; then \
	  hack/image.sh build $(IMAGE) $(CLUSTER_IMAGE); else hack/image.sh build $(IMAGE); fi

# syntax=docker/dockerfile:1
# kata-sandbox-operator: one image, three entrypoints.
#   kata-controller   the cluster controller (Deployment; runs as the image's non-root user)
#   kata-node-agent   the node agent (privileged DaemonSet, root; launches QEMU)
#   kata-api          the aggregated API subresources.kata.sandbox.io (Deployment, non-root)
# Stages: build (TypeScript → one bundled file per component), host-fs (the kata-host-fs helper
# from host-fs/, Go, static; the node agent opens host paths through it), kernel (the guest kernel
# made for the job, guest/kernel/build.sh), guest (the VM's kernels + initramfs from Debian
# packages, with guest/build.sh, the same builder `make guest` uses; its terminal relay is built
# with the host-fs stage's Go),
# runtime (slim Debian with Node.js 20, QEMU and the host tools the node agent runs).
#
# Build: make image   (or: docker build -t kata-sandbox-operator:latest .)

ARG NODE_IMAGE=node:20-bookworm
ARG RUNTIME_IMAGE=node:20-bookworm-slim
ARG GO_IMAGE=golang:1.26-bookworm

# --- build: typecheck and bundle --------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto/ proto/
COPY src/ src/
# tsc checks the whole tree; esbuild makes one self-contained file per entrypoint (no
# node_modules in the runtime image).
RUN npx tsc -p tsconfig.build.json --noEmit \
 && for entry in controllers:kata-controller node-agent:kata-node-agent node-agent/leak-audit:kata-leak-audit kata-api:kata-api; do \
      npx esbuild "src/${entry%%:*}/main.ts" --bundle --platform=node --format=esm \
        --target=node20 --log-level=warning --outfile="/out/bin/${entry##*:}.mjs" \
        "--banner:js=import{createRequire}from'module';const require=createRequire(import.meta.url);" \
      || exit 1; \
    done \
 && chmod 755 /out/bin/*.mjs

# --- host-fs: the kata-host-fs helper, static (CGO_ENABLED=0) -------------------------------
FROM ${GO_IMAGE} AS host-fs
WORKDIR /src/host-fs
COPY host-fs/go.mod host-fs/go.sum ./
RUN go mod download
# The guest's terminal relay (guest/tty-relay) is built in the guest stage with this toolchain and
# these modules, offline.
COPY guest/tty-relay/go.mod guest/tty-relay/go.sum /src/tty-relay/
RUN cd /src/tty-relay && go mod download
COPY host-fs/ ./
RUN CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -ldflags='-s -w' -o /out/kata-host-fs .

# --- kernel: the guest kernel made for the job (guest/kernel/), a stage of its own so that its
# ~8-minute build is redone only when guest/kernel/ changes, not with every source change ----------
FROM ${NODE_IMAGE} AS kernel
WORKDIR /src
COPY hack/setup.sh hack/setup.sh
COPY guest/kernel/ guest/kernel/
# guest/kernel/build.sh installs linux-source and the toolchain through hack/setup.sh.
RUN apt-get update -qq \
 && XDG_CACHE_HOME=/tmp/kernel-cache guest/kernel/build.sh >/tmp/kernel-dir \
 && mkdir -p /out \
 && cp -rL "$(tail -n1 /tmp/kernel-dir)" /out/kernel \
 && rm -rf /tmp/kernel-cache

# --- guest: kernels + initramfs (busybox, crun, node, the guest agent, the terminal relay) ----
FROM build AS guest
# guest/build.sh builds the terminal relay (guest/tty-relay, Go, static): the toolchain and the
# module downloads of the host-fs stage.
COPY --from=host-fs /usr/local/go /usr/local/go
COPY --from=host-fs /go/pkg/mod /go/pkg/mod
ENV PATH=/usr/local/go/bin:$PATH GOPATH=/go GOTOOLCHAIN=local GOPROXY=off
COPY hack/setup.sh hack/setup.sh
COPY guest/ guest/
COPY --from=kernel /out/kernel/ /opt/guest-kernel/
# guest/build.sh installs what it needs (busybox-static, crun, kmod, ...) through hack/setup.sh,
# downloads the stock kernel package, and prints the image directory as its last line.
RUN apt-get update -qq \
 && GUEST_KERNEL_DIR=/opt/guest-kernel GUEST_CACHE_ROOT=/tmp/guest-cache guest/build.sh >/tmp/guest-dir \
 && mkdir -p /out \
 && cp -rL "$(tail -n1 /tmp/guest-dir)" /out/guest

# --- runtime ---------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
# What the node agent runs on the host (test/unit/deploy/dockerfile.test.ts checks this list
# against the code): qemu-system-x86_64 (qemu-system-x86), ip and tc (iproute2), nsenter
# (util-linux), mount/umount (mount), systemd-run (systemd, for QEMU in its own host scope), skopeo
# and umoci (image pulls and unpacking), du (coreutils: the image cache's sizes), and the CNI
# plugins for network mode cni (containernetworking-plugins).
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      qemu-system-x86 \
      iproute2 \
      coreutils \
      util-linux \
      mount \
      systemd \
      skopeo \
      umoci \
      containernetworking-plugins \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/ /opt/kata/bin/
COPY --from=guest /out/guest/ /opt/kata/guest/
# The node agent's --host-fs-binary default.
COPY --from=host-fs /out/kata-host-fs /usr/local/bin/kata-host-fs
# The kubectl plugin, for users to copy out of the image (docs/subresources.md).
COPY bin/kubectl-kata /usr/local/bin/kubectl-kata
RUN ln -s /opt/kata/bin/kata-controller.mjs /usr/local/bin/kata-controller \
 && ln -s /opt/kata/bin/kata-node-agent.mjs /usr/local/bin/kata-node-agent \
 && ln -s /opt/kata/bin/kata-leak-audit.mjs /usr/local/bin/kata-leak-audit \
 && ln -s /opt/kata/bin/kata-api.mjs /usr/local/bin/kata-api
ENV GUEST_IMAGE_DIR=/opt/kata/guest \
    NODE_ENV=production
# The controller's user; the DaemonSet runs the node agent as root.
USER 65532:65532
CMD ["kata-controller"]

#!/usr/bin/env bash
# Generates TypeScript from proto/ with protoc + ts-proto into the directory given ($1).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gen-proto.sh OUTDIR}
rm -rf "$out"
mkdir -p "$out"
protoc \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,importSuffix=.js \
  --ts_proto_opt=forceLong=number,useOptionals=messages,oneof=unions-value \
  -I proto -I /usr/include \
  proto/agent.proto proto/health.proto proto/oci.proto proto/types.proto

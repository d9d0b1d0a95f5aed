#!/bin/sh
# Regenerate the committed protobuf/gRPC stubs. CI runs this and fails on any diff.
set -eu
cd "$(dirname "$0")/.."
# --mypy_grpc_out (mypy-protobuf) types the stubs and servicers: *_pb2_grpc.pyi.
python -m grpc_tools.protoc -I . \
  --python_out=. --pyi_out=. --grpc_python_out=. --mypy_grpc_out=. \
  protos/common.proto protos/netcheck.proto protos/controller.proto protos/agent.proto \
  protos/etcd/kv.proto protos/etcd/auth.proto protos/etcd/rpc.proto

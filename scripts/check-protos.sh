#!/bin/sh
# Fail if regenerating the protobuf stubs would change the committed ones.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -a protos "$tmp/before"
sh scripts/genproto.sh
if ! diff -r -x __pycache__ "$tmp/before" protos >/dev/null; then
  diff -r -x __pycache__ "$tmp/before" protos | head -20
  echo "generated protobuf code is stale: run scripts/genproto.sh and commit" >&2
  exit 1
fi

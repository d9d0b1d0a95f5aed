#!/bin/sh
# The whole test suite: lint, types, import layering, generated-code freshness, then
# unit, integration and end-to-end tests. Needs root (namespaces, cgroups, runc).
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh
. .venv/bin/activate
echo "== ruff"; ruff check .
echo "== mypy --strict"; mypy berth agent controller clusterctl netplugins bench
echo "== import-linter"; lint-imports
echo "== generated protobuf code is fresh"; sh scripts/check-protos.sh
echo "== pytest"; pytest -p no:cacheprovider "$@" tests

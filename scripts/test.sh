#!/bin/sh
# The whole test suite: lint, types, import layering, generated-code freshness, then
# unit, integration, end-to-end and VM tests. Needs root (namespaces, cgroups, runc, qemu).
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh
. .venv/bin/activate
# tests/vm boot it; built once and cached (a cold build takes about 3 minutes, see docs/vm.md).
echo "== VM image for tests/vm"; sh scripts/vm-image.sh
echo "== ruff"; ruff check .
echo "== ansible-lint"; (cd ansible && ansible-lint --offline --profile production)
echo "== mypy --strict"; mypy berth agent controller clusterctl netplugins bench
echo "== import-linter"; lint-imports
echo "== generated protobuf code is fresh"; sh scripts/check-protos.sh
echo "== pytest"; pytest -p no:cacheprovider "$@" tests

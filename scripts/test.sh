#!/bin/sh
# The whole test suite: lint, types, import layering, generated-code freshness, then
# unit, integration, end-to-end, VM (qemu) and deployment (systemd-nspawn + Ansible) tests.
# Needs root (namespaces, cgroups, runc, qemu, nspawn).
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh
. .venv/bin/activate
# tests/vm boot its image and tests/deploy its tree; built once and cached (a cold build
# takes 5-10 minutes, see docs/vm.md), so it does not count against a test's timeout.
echo "== VM image and tree for tests/vm and tests/deploy"; sh scripts/vm-image.sh
echo "== ruff"; ruff check .
echo "== ansible-lint"; (cd ansible && ansible-lint --offline --profile production)
echo "== vagrant validate"; (home=$(mktemp -d) && VAGRANT_HOME=$home vagrant validate; rc=$?
  rm -rf "$home"; exit $rc)
echo "== mypy --strict"; mypy berth agent controller clusterctl netplugins bench
echo "== import-linter"; lint-imports
echo "== generated protobuf code is fresh"; sh scripts/check-protos.sh
# --durations: the slowest tests' times in every run (on an idle 2-core machine tests/deploy
# takes about 13 minutes, tests/vm/test_deploy_vm.py about 10: its playbook runs under TCG).
echo "== pytest"; pytest -p no:cacheprovider --durations=10 "$@" tests

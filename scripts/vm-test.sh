#!/bin/sh
# Issue 9's must-show (tests/deploy/test_deploy.py, all six tests) on THREE qemu VMs with
# Debian's own kernel instead of CI's nspawn machines: ansible/site.yml from scratch, etcd
# and systemd, pings by name across the VMs, a second run with changed=0, an agent
# restart, an etcd member down, an upgrade. Needs root, after scripts/install.sh.
#
# The VMs use KVM if a probe boot succeeds, else TCG (BERTH_VM_ACCEL: auto, kvm or tcg;
# tests/vm/accel.py). Under TCG it takes 30-60 minutes, so CI does not run it;
# docs/deploy.md records a run. Extra arguments go to pytest (e.g. -k ping).
#
# Cleanup: the pytest fixture kills every VM it started (by PID) and deletes the VMs'
# namespace, even when a test fails; qemu also runs under `setpriv --pdeathsig KILL`, so
# the VMs die with pytest if it is killed. Afterwards this script checks that the run's
# namespace (bvm-vt<pid>) is gone, and deletes it if it is not.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "vm-test.sh: needs root" >&2; exit 1; }
. .venv/bin/activate
sh scripts/vm-image.sh >/dev/null
export BERTH_DEPLOY_MACHINES=qemu
export BERTH_VM_ACCEL="${BERTH_VM_ACCEL:-auto}"
export BERTH_VM_TAG="vt$$"
# ansible.posix's profile_tasks: each task's time, and the slowest ones after the recap.
export ANSIBLE_CALLBACKS_ENABLED="${ANSIBLE_CALLBACKS_ENABLED:-ansible.posix.profile_tasks}"
rc=0
pytest -p no:cacheprovider -v -s --durations=0 "$@" tests/deploy/test_deploy.py || rc=$?
if ip netns list | grep -qx "bvm-$BERTH_VM_TAG\( .*\)\?"; then
  echo "vm-test.sh: namespace bvm-$BERTH_VM_TAG left behind: deleting it" >&2
  ip netns del "bvm-$BERTH_VM_TAG" || rc=1
fi
exit $rc

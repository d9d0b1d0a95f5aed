#!/bin/sh
# The Vagrantfile end to end on this machine (root, after scripts/install.sh): three
# Debian 12 VMs with vagrant-libvirt, provisioned by ansible/site.yml, then the cross-host
# ping-by-name test (scripts/ping-by-name.sh) over `vagrant ssh`. Prints a PASS/FAIL
# summary; exits non-zero on failure.
#
# Nothing is downloaded and nothing in this machine's own namespaces changes:
#   - the box is built locally from the test machines' tree (scripts/vagrant-box.sh);
#   - libvirtd runs in a network namespace of its own (bvg-<random>; no link leads out)
#     and a private mount namespace, with its own /etc/libvirt, /run/libvirt,
#     /var/lib/libvirt and /var/log/libvirt bound from a temporary directory; the
#     management network is isolated (mode "none"), so libvirt's firewall rules land in
#     that namespace only. Vagrant and ansible-playbook run in the same namespaces;
#   - VAGRANT_HOME and Vagrant's .vagrant directory are temporary too.
# Always, even on failure or Ctrl-C: `vagrant destroy -f`, libvirtd stopped by its PID,
# whatever else it left in the namespace killed by PID, the namespace and the temporary
# directory removed.
#
# Settings (environment): BERTH_VM_ACCEL=kvm to use KVM (default tcg: qemu without KVM),
# BERTH_VM_MEMORY (MiB per VM), BERTH_VAGRANT_KEEP=1 keeps the temporary directory
# (consoles, logs) after the run.
set -eu
script=$(readlink -f "$0")
repo=$(dirname "$(dirname "$script")")
cd "$repo"

say() { echo "vagrant-test: $*" >&2; }
die() { say "$*"; exit 1; }
now() { date +%s; }

# ---------------------------------------------------------------- inside the namespaces
# `sh vagrant-test.sh --inside TMP`: run by the outer part below, in the network
# namespace and a private mount namespace.
if [ "${1:-}" = --inside ]; then
  tmp=$2
  export VAGRANT_HOME="$tmp/vagrant.d" VAGRANT_DOTFILE_PATH="$tmp/dot" \
    VAGRANT_DEFAULT_PROVIDER=libvirt VAGRANT_CHECKPOINT_DISABLE=1 \
    VAGRANT_BOX_UPDATE_CHECK_DISABLE=1 VAGRANT_NO_COLOR=1 \
    BERTH_BOX=berth/debian12 BERTH_VM_ACCEL="${BERTH_VM_ACCEL:-tcg}" \
    BERTH_ANSIBLE_VARS="$tmp/extra-vars.json" BERTH_VAGRANT_CONSOLE_DIR="$tmp/console" \
    ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP="$tmp/ansible-tmp" ANSIBLE_HOME="$tmp/ansible-home" \
    PATH="$repo/.venv/bin:$PATH"
  result=FAIL
  libvirtd_pid=""
  inner_cleanup() {
    trap - EXIT INT TERM HUP
    if [ -S /run/libvirt/libvirt-sock ]; then
      t=$(now)
      say "vagrant destroy -f"
      vagrant destroy -f >"$tmp/destroy.log" 2>&1 || { tail -n 20 "$tmp/destroy.log" >&2; say "vagrant destroy failed"; }
      say "destroyed in $(($(now) - t))s"
    fi
    if [ -n "$libvirtd_pid" ] && kill -0 "$libvirtd_pid" 2>/dev/null; then
      kill "$libvirtd_pid"
      n=0
      while kill -0 "$libvirtd_pid" 2>/dev/null && [ $n -lt 30 ]; do sleep 1; n=$((n + 1)); done
      kill -0 "$libvirtd_pid" 2>/dev/null && kill -9 "$libvirtd_pid"
    fi
    echo "$result" >"$tmp/result"
  }
  trap inner_cleanup EXIT
  trap 'say interrupted; exit 130' INT TERM HUP

  # libvirt's configuration: the installed one, with no networks or domains, stdio to
  # files (no virtlogd), no security driver, qemu as root (the box and its kernel live in
  # this temporary directory).
  mkdir -p "$tmp/etc" "$tmp/run" "$tmp/lib/images" "$tmp/log" "$tmp/console"
  cp -a /etc/libvirt/. "$tmp/etc/"
  rm -rf "$tmp/etc/qemu" "$tmp/etc/storage"
  mkdir -p "$tmp/etc/qemu/networks/autostart" "$tmp/etc/storage/autostart"
  cat >>"$tmp/etc/qemu.conf" <<'EOF'
stdio_handler = "file"
security_driver = "none"
user = "root"
group = "root"
EOF
  mount --bind "$tmp/etc" /etc/libvirt
  mount --bind "$tmp/run" /run/libvirt
  mount --bind "$tmp/lib" /var/lib/libvirt
  mount --bind "$tmp/log" /var/log/libvirt
  ip link set lo up
  libvirtd --daemon --pid-file "$tmp/libvirtd.pid"
  n=0
  until [ -S /run/libvirt/libvirt-sock ] && [ -s "$tmp/libvirtd.pid" ]; do
    n=$((n + 1))
    [ $n -lt 60 ] || die "libvirtd did not start (log: $tmp/log)"
    sleep 0.5
  done
  libvirtd_pid=$(cat "$tmp/libvirtd.pid")
  say "libvirtd $libvirtd_pid in network namespace $(ip netns identify 2>/dev/null || echo ?)"

  t=$(now)
  vagrant box add --name berth/debian12 "$tmp/berth-debian12.box" >"$tmp/box-add.log" 2>&1 ||
    { tail -n 20 "$tmp/box-add.log" >&2; die "vagrant box add failed"; }
  say "box added in $(($(now) - t))s"

  t=$(now)
  say "vagrant up --no-provision (3 VMs, $BERTH_VM_ACCEL)"
  if ! vagrant up --no-provision >"$tmp/up.log" 2>&1; then
    tail -n 30 "$tmp/up.log" >&2
    for c in "$tmp"/console/*.log; do [ -f "$c" ] && { say "$c:"; tail -n 15 "$c" >&2; }; done
    die "vagrant up failed"
  fi
  say "up in $(($(now) - t))s"
  vagrant status 2>&1 | sed -n '/^node/p' >&2

  t=$(now)
  say "vagrant provision node3 (ansible/site.yml for all three)"
  if ! vagrant provision node3 >"$tmp/provision.log" 2>&1; then
    tail -n 40 "$tmp/provision.log" >&2
    die "the playbook failed"
  fi
  say "provisioned in $(($(now) - t))s; recap:"
  sed -n '/^PLAY RECAP/,/^$/p' "$tmp/provision.log" >&2

  # The systemd units, as `vagrant ssh` sees them.
  for node in node1 node2 node3; do
    state=$(vagrant ssh "$node" -c 'systemctl is-active etcd berth-agent | tr "\n" " "' \
      2>/dev/null | tr -d '\r')
    say "$node: etcd, berth-agent: $state"
  done

  # The test itself, on node1 over `vagrant ssh`, with the admin identity the pki role
  # keeps on the control machine.
  t=$(now)
  mkdir -p "$tmp/ping"
  cp "$tmp/control/pki/ca.crt" "$tmp/control/pki/admin.crt" "$tmp/control/pki/admin.key" \
    "$repo/scripts/ping-by-name.sh" "$tmp/ping/"
  vagrant ssh node1 -c 'mkdir -p /tmp/berth-ping' >"$tmp/upload.log" 2>&1
  for f in "$tmp"/ping/*; do
    vagrant upload "$f" "/tmp/berth-ping/$(basename "$f")" node1 >>"$tmp/upload.log" 2>&1 ||
      { cat "$tmp/upload.log" >&2; die "vagrant upload failed"; }
  done
  say "vagrant ssh node1 -c 'sudo sh /tmp/berth-ping/ping-by-name.sh ...'"
  if vagrant ssh node1 -c \
      'sudo sh /tmp/berth-ping/ping-by-name.sh /tmp/berth-ping 10.77.0.11:7070' \
      2>&1 | tr -d '\r' | tee "$tmp/ping.log" >&2 &&
      grep -q '^ping-by-name: PASS' "$tmp/ping.log"; then
    result=PASS
  fi
  say "ping test in $(($(now) - t))s"
  exit 0
fi

# ---------------------------------------------------------------- outside
[ "$(id -u)" = 0 ] || die "needs root (namespaces, libvirtd)"
for tool in vagrant libvirtd dnsmasq qemu-system-x86_64 ip unshare mountpoint; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/install.sh"
done
[ -x .venv/bin/ansible-playbook ] || die ".venv/bin/ansible-playbook not found: run scripts/install.sh"

started=$(now)
box=$(sh scripts/vagrant-box.sh)
tmp=$(mktemp -d /tmp/berth-vagrant.XXXXXX)
ns=bvg-$(basename "$tmp" | tail -c 7 | tr 'A-Z' 'a-z')
made_run_libvirt=""
interrupted=""
cleanup() {
  trap - EXIT INT TERM HUP
  # The inner part destroyed the VMs and stopped libvirtd; kill (by PID) whatever is left
  # in the namespace: dnsmasq, qemu of a VM vagrant could not destroy.
  if ip netns list | grep -qw "$ns"; then
    for sig in TERM KILL; do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -n "$pids" ] || break
      say "killing what is left in $ns ($sig): $pids"
      # shellcheck disable=SC2086
      kill -"$sig" $pids 2>/dev/null || true
      sleep 2
    done
    ip netns delete "$ns"
  fi
  if [ -n "$made_run_libvirt" ]; then rmdir /run/libvirt 2>/dev/null || true; fi
  if [ "${BERTH_VAGRANT_KEEP:-}" = 1 ]; then
    say "kept $tmp"
  elif [ "$(cat "$tmp/result" 2>/dev/null)" != PASS ]; then
    # The logs and consoles of a failed run stay; the disks and the box go.
    rm -rf --one-file-system "$tmp/lib" "$tmp/vagrant.d" "$tmp/control/wheelhouse" \
      "$tmp/berth-debian12.box"
    say "logs kept in $tmp"
  else
    rm -rf --one-file-system "$tmp"
  fi
}
trap cleanup EXIT
trap 'interrupted=1' INT TERM HUP

VAGRANT_HOME="$tmp/vagrant.d" vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt ||
  die "the vagrant-libvirt plugin is not installed: run scripts/install.sh"

# The control machine's directory (berth_local_dir): the wheelhouse filled here, where
# the package index is, since inside the namespace nothing is reachable.
say "wheelhouse"
mkdir -p "$tmp/control/wheelhouse" "$tmp/ansible-tmp"
.venv/bin/python -m pip freeze --exclude-editable >"$tmp/control/constraints.txt"
reqs=$(.venv/bin/python -c 'import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
# shellcheck disable=SC2086
.venv/bin/python -m pip download -q --disable-pip-version-check --only-binary=:all: \
  --python-version 3.11 -d "$tmp/control/wheelhouse" -c "$tmp/control/constraints.txt" \
  $reqs >"$tmp/pip.log" 2>&1 || { tail -n 20 "$tmp/pip.log" >&2; die "pip download failed"; }
printf '{"berth_local_dir": "%s", "agent_dns_upstreams": "none"}\n' "$tmp/control" \
  >"$tmp/extra-vars.json"
ln -s "$box" "$tmp/berth-debian12.box"

[ -d /run/libvirt ] || { mkdir /run/libvirt; made_run_libvirt=1; }
ip netns add "$ns"
say "network namespace $ns, temporary directory $tmp"
rc=0
ip netns exec "$ns" unshare --mount --propagation private \
  sh "$script" --inside "$tmp" || rc=$?
result=$(cat "$tmp/result" 2>/dev/null || echo FAIL)
[ -z "$interrupted" ] || result="FAIL (interrupted)"
[ $rc -eq 0 ] || [ "$result" != PASS ] || result="FAIL (exit $rc)"
cleanup
left=$(ps -eo pid=,args= | grep -F "$tmp" | grep -v grep || true)
[ -z "$left" ] || { say "processes left behind:"; echo "$left" >&2; result="FAIL (processes left)"; }
echo "vagrant-test: $result in $(($(now) - started))s"
case $result in PASS) exit 0 ;; *) exit 1 ;; esac

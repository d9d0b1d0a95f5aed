#!/bin/sh
# The cross-host ping-by-name test, run ON a deployed node (as root) with the admin
# identity: an overlay network and a 3-replica service (one container per node), then
# every ordered pair of the three containers pings the other by name. Prints the matrix
# and "ping-by-name: PASS" (exit 0) or "ping-by-name: FAIL ..." (exit 1).
#
#   sh ping-by-name.sh DIR SERVER
#     DIR     holds ca.crt, admin.crt and admin.key (the control machine's PKI: the pki
#             role keeps admin's certificate there); the test writes its files here too
#     SERVER  the controller, host:port (e.g. 10.77.0.11:7070)
#
# scripts/vagrant-test.sh copies this script and the identity to node1 and runs it over
# `vagrant ssh`. It uses what the playbook installed: /opt/berth/venv (clusterctl, and
# berth.busybox for a busybox image made from the node's busybox-static).
set -eu
[ $# -eq 2 ] || { echo "usage: ping-by-name.sh DIR SERVER" >&2; exit 2; }
dir=$(readlink -f "$1")
server=$2
venv=${BERTH_VENV:-/opt/berth/venv}
names="web-1 web-2 web-3"
for f in ca.crt admin.crt admin.key; do
  [ -f "$dir/$f" ] || { echo "ping-by-name: $dir/$f not found" >&2; exit 2; }
done
[ -x "$venv/bin/clusterctl" ] || { echo "ping-by-name: $venv/bin/clusterctl not found" >&2; exit 2; }

cat >"$dir/clusterctl.yaml" <<EOF
current-context: ping
contexts:
  - name: ping
    server: $server
    ca: $dir/ca.crt
    cert: $dir/admin.crt
    key: $dir/admin.key
EOF
chmod 600 "$dir/clusterctl.yaml" "$dir/admin.key"
export BERTH_CONFIG="$dir/clusterctl.yaml"
unset BERTH_CONTEXT BERTH_CONTROLLER
ctl() { "$venv/bin/clusterctl" "$@"; }
step() { echo "ping-by-name: $* ($(date -u +%H:%M:%S))"; }

step "nodes"
n=0
until [ "$(ctl get nodes | grep -c Ready)" = 3 ]; do
  n=$((n + 1))
  [ $n -lt 60 ] || { ctl get nodes; echo "ping-by-name: FAIL (3 nodes not Ready)"; exit 1; }
  sleep 2
done
ctl get nodes

step "busybox image"
"$venv/bin/python" -c 'import sys; from pathlib import Path
from berth.busybox import build_busybox_image
build_busybox_image(Path(sys.argv[1]))' "$dir/busybox.tar"
ctl image load "$dir/busybox.tar"

step "overlay manifest"
cat >"$dir/appnet.yaml" <<'EOF'
apiVersion: berth/v1
kind: Network
metadata: {name: appnet}
spec: {driver: overlay, subnet: 10.42.0.0/24}
---
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 3
  image: busybox:latest
  command: [sleep, "36000"]
  networks: [appnet]
EOF
ctl apply -f "$dir/appnet.yaml" --wait
ctl get containers
placement=$(ctl get containers -o json | "$venv/bin/python" -c '
import json, sys
rows = {r["name"]: r for r in json.load(sys.stdin)}
for name in sys.argv[1:]:
    row = rows.get(name, {})
    print(name, row.get("node", "?"), row.get("state", "missing"))' $names)
nodes=$(echo "$placement" | awk '$3 == "running" {print $2}' | sort -u | wc -l)
if [ "$nodes" != 3 ]; then
  echo "$placement"
  echo "ping-by-name: FAIL (the 3 replicas do not run on 3 different nodes)"
  exit 1
fi

step "pings"
pings() {   # src dst: up to 60 s for the overlay and DNS to settle
  i=0
  while [ $i -lt 20 ]; do
    if ctl exec "$1" -- ping -c1 -W2 "$2" >/dev/null 2>&1; then return 0; fi
    i=$((i + 1))
    sleep 1
  done
  return 1
}
failed=0
header=$(printf '%-16s' "from \\ to")
for dst in $names; do header="$header$(printf '%-8s' "$dst")"; done
matrix=$header
for src in $names; do
  node=$(echo "$placement" | awk -v n="$src" '$1 == n {print $2}')
  line=$(printf '%-16s' "$src ($node)")
  for dst in $names; do
    if [ "$src" = "$dst" ]; then
      cell=-
    elif pings "$src" "$dst"; then
      cell=ok
    else
      cell=FAIL
      failed=$((failed + 1))
    fi
    line="$line$(printf '%-8s' "$cell")"
  done
  matrix="$matrix
$line"
done
echo "$matrix"
if [ $failed -eq 0 ]; then
  echo "ping-by-name: PASS (6 of 6 ordered pairs ping by name across 3 nodes)"
else
  echo "ping-by-name: FAIL ($failed of 6 ordered pairs do not ping)"
  exit 1
fi

#!/bin/sh
# Bring up the embedded default (a 3-host lab on this machine), apply examples/hello.yaml
# and show containers on different hosts answering each other by name.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh
ctl=.venv/bin/clusterctl
$ctl lab up --name demo --hosts 3
# Talk to this lab through its own context (lab up added it: controller address, CA and
# admin certificate), whichever context this shell's config has selected.
BERTH_CONTEXT=demo
export BERTH_CONTEXT
$ctl apply -f examples/hello.yaml --wait
$ctl get nodes
$ctl get networks
$ctl get containers -o wide
# --wait returns once every replica runs; their names reach the other hosts' resolvers
# a moment later (well under a second on an idle machine). Wait for that, boundedly.
tries=0
until $ctl exec web-1 -- nslookup web-3 >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 40 ]; then echo "web-3 does not resolve from web-1 after 20 s" >&2; exit 1; fi
  sleep 0.5
done
echo "+ clusterctl exec web-1 -- ping -c1 -W2 web-3"
$ctl exec web-1 -- ping -c1 -W2 web-3
echo "+ clusterctl exec web-1 -- wget -qO- http://web-2/"
$ctl exec web-1 -- wget -qO- http://web-2/
echo "done: the lab 'demo' keeps running; remove it with: $ctl lab down --name demo"

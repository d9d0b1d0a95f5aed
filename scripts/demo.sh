#!/bin/sh
# Bring up the embedded default (a 3-host lab on this machine), apply examples/hello.yaml
# and show containers on different hosts answering each other by name.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh
ctl=.venv/bin/clusterctl
$ctl lab up --name demo --hosts 3
$ctl apply -f examples/hello.yaml --wait
$ctl get nodes
$ctl get networks
$ctl get containers -o wide
echo "+ clusterctl exec web-1 -- ping -c1 -W2 web-3"
$ctl exec web-1 -- ping -c1 -W2 web-3
echo "+ clusterctl exec web-1 -- wget -qO- http://web-2/"
$ctl exec web-1 -- wget -qO- http://web-2/
echo "done: the lab 'demo' keeps running; remove it with: $ctl lab down --name demo"

"""Manifest texts several test files start from (tests only)."""

from __future__ import annotations

NETWORK = """\
apiVersion: berth/v1
kind: Network
metadata: {name: appnet}
spec: {driver: overlay, subnet: 10.42.0.0/24}
"""
# One service, no network: what a single-document test varies.
SERVICE = """\
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 2
  image: busybox:latest
"""
# Every field manifest v1 supports, in its less common shapes (string command, env list,
# networks mapping with options).
FULL = """\
apiVersion: berth/v1
kind: Network
metadata: {name: appnet, labels: {team: web}}
spec: {driver: overlay, subnet: 10.42.0.0/24, gateway: 10.42.0.1}
---
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 2
  image: busybox:latest
  command: [httpd, -f, -p, "80"]
  entrypoint: /bin/sh -c 'exec "$@"' --
  env: [MODE=prod, "URL=http://x/?a=b"]
  workdir: /www
  networks: {appnet: {aliases: [frontend], ip: 10.42.0.9}}
  placement: {node: host2}
"""
# The networking fields in their less common shapes: every driver with options, ports in
# both syntaxes, network_mode.
NETWORKING = """\
apiVersion: berth/v1
kind: Network
metadata: {name: lan}
spec:
  driver: macvlan
  subnet: 192.168.5.0/24
  ip_range: 192.168.5.128/25
  aux_addresses: {router: 192.168.5.254}
  options: {parent: eth0.10, mode: vepa}
---
apiVersion: berth/v1
kind: Network
metadata: {name: br}
spec: {driver: bridge, subnet: 10.50.0.0/24, internal: true, mtu: 1400, options: {icc: false}}
---
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 2
  image: busybox:latest
  networks: [br]
  ports: ["8080:80", "127.0.0.1:8081:80/udp", "80", {target: 90, published: "9090"}, 91]
  endpoint_mode: dnsrr
---
apiVersion: berth/v1
kind: Service
metadata: {name: side}
spec:
  replicas: 2
  image: busybox:latest
  network_mode: service:web
"""

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

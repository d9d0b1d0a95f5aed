"""Rendering of ``get`` results: table (rich), wide, JSON and YAML.

JSON/YAML objects are plain dicts whose keys are the stable, documented output
(``get containers -o json`` gives name, service, node, state, exit_code,
networks: {net: {ip}}, ports: [{host_ip, host_port, container_port, protocol}],
network_mode, and generation/observed_generation: the spec generation being rolled out
and the one the agent last reported; ``get networks`` lists the node-local default
network ``bridge`` once per subnet its nodes report, with ``nodes``). Every kind has
``invalid``: empty, or why berth cannot process the object's record (a poison pill); the
table shows such a row's status as ``Invalid: <reason>``. Called by clusterctl.main.
"""

from __future__ import annotations

import json
from collections.abc import MutableSequence, Sequence
from typing import Any

import yaml
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from protos import controller_pb2

Row = dict[str, Any]

COLUMNS: dict[str, tuple[str, ...]] = {
    "nodes": ("name", "status", "address", "containers", "labels"),
    "services": ("name", "image", "replicas", "running", "status"),
    "containers": ("name", "service", "node", "state", "exit_code", "ip"),
    "networks": ("name", "driver", "subnet", "vni", "endpoints", "nodes", "status"),
}
WIDE_EXTRA: dict[str, tuple[str, ...]] = {
    "nodes": ("agent_addr",),
    "services": (),
    "containers": ("ports", "pid", "image", "started_at", "finished_at", "error"),
    "networks": ("gateway", "ip_range", "internal", "mtu", "options"),
}


def _container(c: controller_pb2.Container) -> Row:
    return {
        "name": c.name,
        "service": c.service,
        "node": c.node,
        "state": c.state,
        "exit_code": c.exit_code if c.HasField("exit_code") else None,
        "pid": c.pid,
        "image": c.image,
        "started_at": c.started_at,
        "finished_at": c.finished_at,
        "error": c.error,
        "generation": c.generation,
        "observed_generation": c.observed_generation,
        "networks": {n: {"ip": v.ip, "mac": v.mac} for n, v in sorted(c.networks.items())},
        "ports": [{"host_ip": p.host_ip, "host_port": p.host_port,
                   "container_port": p.container_port, "protocol": p.protocol}
                  for p in c.ports],
        "network_mode": c.network_mode,
        "invalid": c.invalid,
    }


def _plain(msg: Message) -> Row:
    row: Row = {}
    for f in msg.DESCRIPTOR.fields:
        if f.name == "spec_json":
            continue
        value = getattr(msg, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            value = dict(sorted(value.items()))
        elif isinstance(value, MutableSequence):      # a repeated field
            value = list(value)
        row[f.name] = value
    return row


def port_text(port: Row) -> str:
    """Docker's form: ``0.0.0.0:8080->80/tcp``."""
    return (f"{port['host_ip']}:{port['host_port']}->{port['container_port']}/"
            f"{port['protocol']}")


def rows(kind: str, resp: controller_pb2.GetResponse) -> list[Row]:
    if kind == "containers":
        return [_container(c) for c in resp.containers]
    items: Sequence[Message]
    if kind == "nodes":
        items = resp.nodes
    elif kind == "services":
        items = resp.services
    else:
        items = resp.networks
    return [_plain(m) for m in items]


def _cell(row: Row, col: str) -> str:
    if col in ("status", "state") and row.get("invalid"):
        return f"{row.get(col) or 'Invalid'}: {row['invalid']}"
    if col == "ip":
        ips = [n["ip"] for n in row.get("networks", {}).values() if n.get("ip")]
        return ",".join(ips) or "-"
    if col == "ports":
        return ",".join(port_text(p) for p in row.get("ports", [])) or "-"
    value = row.get(col)
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if col in ("mtu", "vni") and value == 0:
        return "-"
    return "-" if value is None or value == "" else str(value)


def render(kind: str, data: list[Row], fmt: str, console: Console) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    if fmt == "yaml":
        print(yaml.safe_dump(data, sort_keys=True), end="")
        return
    cols = COLUMNS[kind] + (WIDE_EXTRA[kind] if fmt == "wide" else ())
    table = Table(box=None, pad_edge=False, show_edge=False)
    for col in cols:
        table.add_column(col.upper())
    for row in data:
        table.add_row(*(_cell(row, c) for c in cols))
    console.print(table)

"""Rendering of ``get`` results: table (rich), wide, JSON and YAML.

JSON/YAML objects are plain dicts whose keys are the stable, documented output
(``get containers -o json`` gives name, service, node, state, exit_code,
networks: {net: {ip}}, and generation/observed_generation: the spec generation
being rolled out and the one the agent last reported). Every kind has ``invalid``: empty,
or why berth cannot process the object's record (a poison pill); the table shows such a
row's status as ``Invalid: <reason>``. Called by clusterctl.main.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from protos import controller_pb2

Row = dict[str, Any]

COLUMNS: dict[str, tuple[str, ...]] = {
    "nodes": ("name", "status", "address", "containers"),
    "services": ("name", "image", "replicas", "running", "status"),
    "containers": ("name", "service", "node", "state", "exit_code", "ip"),
    "networks": ("name", "driver", "subnet", "vni", "endpoints", "status"),
}
WIDE_EXTRA: dict[str, tuple[str, ...]] = {
    "nodes": ("agent_addr",),
    "services": (),
    "containers": ("pid", "image", "started_at", "finished_at", "error"),
    "networks": ("gateway",),
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
        "invalid": c.invalid,
    }


def _plain(msg: Message) -> Row:
    return {f.name: getattr(msg, f.name) for f in msg.DESCRIPTOR.fields if f.name != "spec_json"}


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
    value = row.get(col)
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

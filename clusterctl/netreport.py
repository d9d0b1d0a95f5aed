"""Rendering of a netcheck report: a matrix per network, or JSON.

Called by clusterctl.main. Rows are sources (``container@node``), columns destinations.
``table`` marks cells ✓ (ok), ✗ (fails), ? (could not probe), · (nothing expected: not
probed); ``plain`` writes ok, FAIL, ERROR and skip instead, for scripts and terminals
without those glyphs. Every failing cell gets a number, listed under its matrix with
what each probe saw and the diagnosis. JSON holds the same data: per network the
expectation, the containers probed, every cell with each probe's result and the
diagnosis, and each node's facts (the stable, documented keys in docs/netcheck.md).
"""

from __future__ import annotations

import json
from typing import Any

from clusterctl.netcheck import NetReport, Report
from clusterctl.netdiagnosis import Cell, Status
from clusterctl.netmodel import Expectation, Facts, Member, PairRule

MARKS = {
    "table": {Status.OK: "✓", Status.FAIL: "✗", Status.ERROR: "?", Status.SKIP: "·"},
    "plain": {Status.OK: "ok", Status.FAIL: "FAIL", Status.ERROR: "ERROR",
              Status.SKIP: "skip"},
}
SELF = "-"


def _summary(cell: Cell) -> str:
    parts = []
    for p in cell.probes:
        if p.kind == "route":
            continue
        what = {"dns": f"DNS {p.target}", "ping": "ICMP"}.get(p.kind, f"TCP {p.target}")
        parts.append(f"{what} {'ok' if p.ok else p.detail}")
    return ", ".join(parts) or cell.status.value


def _matrix(report: NetReport, marks: dict[Status, str]) -> tuple[list[str], list[Cell]]:
    chosen = report.chosen
    heads = [m.label for m in chosen]
    cells = {(c.src.label, c.dst.label): c for c in report.cells}
    failing: list[Cell] = []
    rows = [["FROM \\ TO", *heads]]
    for src in chosen:
        row = [src.label]
        for dst in chosen:
            cell = cells.get((src.label, dst.label))
            if cell is None:
                row.append(SELF)
                continue
            mark = marks[cell.status]
            if cell.status in (Status.FAIL, Status.ERROR):
                failing.append(cell)
                mark += f" {len(failing)}"
            row.append(mark)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    return lines, failing


def text(report: Report, fmt: str) -> str:
    marks = MARKS[fmt]
    out: list[str] = []
    for net in report.networks:
        n = net.network
        nodes = len({m.node for m in n.members})
        out.append(f"NETWORK {n.name} ({n.driver}, {n.subnet or 'no subnet'}): "
                   f"{len(n.members)} running containers on {nodes} nodes")
        if net.note:
            out += [f"  {net.note}", ""]
            continue
        lines, failing = _matrix(net, marks)
        out += lines
        for i, cell in enumerate(failing, 1):
            out.append(f"  [{i}] {cell.src.label} -> {cell.dst.label}: {_summary(cell)}")
            out += [f"      {d}" for d in cell.diagnosis]
        out.append("")
    if not report.networks:
        out.append("no networks")
    verdict = "every pair behaves as its network promises" if report.ok else \
        "some pairs do not behave as their network promises"
    out.append(verdict)
    return "\n".join(out)


def _member(m: Member) -> dict[str, Any]:
    return {"container": m.container, "node": m.node, "ip": m.ip, "mac": m.mac,
            "host_ip": m.host_ip, "tcp_ports": list(m.tcp_ports)}


def _rule(r: PairRule) -> dict[str, str]:
    return {"dns": r.dns.value, "traffic": r.traffic.value}


def _expect(e: Expectation) -> dict[str, Any]:
    return {"same_node": _rule(e.same_node), "cross_node": _rule(e.cross_node),
            "per_node": e.per_node, "why": e.why}


def _cell(c: Cell) -> dict[str, Any]:
    return {
        "from": c.src.container, "from_node": c.src.node,
        "to": c.dst.container, "to_node": c.dst.node,
        "status": c.status.value, "expect": _rule(c.rule),
        "probes": [{"kind": p.kind, "target": p.target, "ok": p.ok, "detail": p.detail,
                    "answers": list(p.answers)} for p in c.probes],
        "diagnosis": list(c.diagnosis),
    }  # fmt: skip


def _facts(f: Facts) -> dict[str, Any]:
    return {
        "error": f.error, "host_ip": f.host_ip,
        "links": [{"name": lk.name, "want_kind": lk.want_kind, "present": lk.present,
                   "kind": lk.kind, "up": lk.up, "master": lk.master} for lk in f.links],
        "fdb": [{"mac": mac, "dst": dst} for mac, dsts in sorted(f.fdb.items())
                for dst in sorted(dsts)],
        "neighbours": [{"ip": ip, "mac": mac} for ip, mac in sorted(f.neigh.items())],
        "routes": [{"dst": r.dst, "device": r.device, "gateway": r.gateway} for r in f.routes],
    }  # fmt: skip


def as_json(report: Report) -> str:
    nets = []
    for net in report.networks:
        n = net.network
        nets.append({
            "name": n.name, "driver": n.driver, "subnet": n.subnet, "ok": net.ok,
            "note": net.note, "expect": _expect(n.expectation),
            "containers": [_member(m) for m in net.chosen],
            "cells": [_cell(c) for c in net.cells],
            "nodes": {node: _facts(f) for node, f in sorted(n.facts.items())},
        })  # fmt: skip
    return json.dumps({"ok": report.ok, "networks": nets}, indent=2)

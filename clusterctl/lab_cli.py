"""``clusterctl lab up|down|status``: the embedded default, several hosts on one machine."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Annotated, Any

import typer
from rich.console import Console

from clusterctl import lab

lab_app = typer.Typer(no_args_is_help=True, help="Simulated multi-host lab on this machine.")
_err = Console(stderr=True)
_out = Console()


def _as_dict(info: lab.LabInfo) -> dict[str, Any]:
    return dataclasses.asdict(info) | {"running": info.running}


@lab_app.command("up")
def up(
    name: Annotated[str, typer.Option("--name", help="lab name")] = "lab",
    hosts: Annotated[int, typer.Option("--hosts", min=1, max=16, help="simulated hosts")] = 3,
) -> None:
    """Bring up (or repair) a lab; returns when every node is Ready."""
    with _err.status(f"lab {name}: starting") as status:
        info = asyncio.run(
            lab.up(name, hosts, progress=lambda msg: status.update(f"lab {name}: {msg}"))
        )
    _out.print(
        f"lab {info.name} is up: controller {info.controller}, {len(info.hosts)} hosts Ready"
    )
    for h in info.hosts:
        _out.print(f"  {h.name}  {h.underlay_ip}", highlight=False)
    _out.print(f"  outside  {info.outside.lab_ip}  ({info.outside.address}, netns "
               f"{info.outside.netns})", highlight=False, soft_wrap=True)


@lab_app.command("down")
def down(name: Annotated[str, typer.Option("--name", help="lab name")] = "lab") -> None:
    """Remove every process, namespace, link, mount, cgroup and state dir of a lab."""
    asyncio.run(lab.down(name))
    _out.print(f"lab {name} is down")


@lab_app.command("status")
def status(
    name: Annotated[str | None, typer.Option("--name")] = None,
    fmt: Annotated[str, typer.Option("-o", "--output", help="table|json")] = "table",
) -> None:
    """Show labs on this machine and whether their processes live."""
    labs = lab.status(name)
    if fmt == "json":
        print(json.dumps([_as_dict(i) for i in labs], indent=2, default=str))
        return
    if not labs:
        _out.print("no labs")
    for info in labs:
        alive = ", ".join(
            f"{role} {'up' if ok else 'DOWN'}" for role, ok in sorted(info.alive.items())
        )
        _out.print(
            f"{info.name}: controller {info.controller}, subnet {info.subnet}: {alive}",
            highlight=False,
        )
        _out.print(
            f"  outside: {info.outside.address} (netns {info.outside.netns}, "
            f"via {info.outside.lab_ip})",
            highlight=False, soft_wrap=True,
        )

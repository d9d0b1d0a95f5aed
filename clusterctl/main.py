"""clusterctl: the command line for berth (kubectl- and docker-shaped verbs).

Each command is a thin wrapper: parse flags, call the controller over gRPC (or
the lab module), render. Errors become one line on stderr and a non-zero exit;
only ``main`` exits, with the code the error carries (clusterctl.client.ExitCode,
listed in the README). ``exec`` and ``logs`` exit 125 for every berth failure, as
docker does, so their own exit codes stay the command's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from berth import kinds
from berth.errors import UserError
from berth.manifest import MAX_MANIFEST_BYTES, check_size
from clusterctl import output
from clusterctl.client import CtlError, ExitCode, Selection, connect
from clusterctl.config_cli import config_app
from clusterctl.lab_cli import lab_app
from clusterctl.pki_cli import pki_app
from clusterctl.waiting import wait_for_services
from protos import common_pb2, controller_pb2

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Drive a berth cluster.",
)
image_app = typer.Typer(no_args_is_help=True, help="Manage images.")
app.add_typer(lab_app, name="lab")
app.add_typer(image_app, name="image")
app.add_typer(pki_app, name="pki")
app.add_typer(config_app, name="config")

err = Console(stderr=True)
# Piped output (scripts, tests) must not be cut to 80 columns.
out = Console() if sys.stdout.isatty() else Console(width=250)
_state: dict[str, Selection] = {"where": Selection()}

ControllerOpt = Annotated[str | None, typer.Option(
    "--controller", help="controller host:port (plaintext unless --context names the certificate)")]
ContextOpt = Annotated[str | None, typer.Option(
    "--context", help="context of the clusterctl config to use (default: BERTH_CONTEXT, "
    "then the current context)")]


def _fail(exc: Exception) -> None:
    # One line, never wrapped to the terminal width: scripts and people grep it.
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    print(f"Error: {text}", file=sys.stderr)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def _kind(word: str) -> str:
    kind = kinds.resource(word)
    if kind is None:
        raise CtlError(f"unknown kind {word!r} (expected one of: {', '.join(kinds.RESOURCES)})")
    return kind


def _read(path: Path) -> bytes:
    """A manifest's bytes; one over the size limit is refused before it is read or sent."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise CtlError(f"{path}: {exc.strerror}") from exc
    check_size(str(path), max(size, len(data)))     # a pipe has no size: count what came
    return data


@app.callback()
def _root(controller: ControllerOpt = None, context: ContextOpt = None) -> None:
    _state["where"] = Selection(context=context, controller=controller)


@app.command()
def apply(
    file: Annotated[Path, typer.Option("-f", "--filename", help="manifest file")],
    wait: Annotated[bool, typer.Option("--wait", help="wait until every service runs")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate only")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait with --wait")] = 180.0,
) -> None:
    """Create or update what FILE describes."""
    data = _read(file)

    async def go() -> None:
        async with connect(_state["where"]) as stub:
            req = controller_pb2.ApplyRequest(source=str(file), manifest=data, dry_run=dry_run)
            resp = await stub.Apply(req)
            for obj in resp.objects:
                suffix = " (dry run)" if dry_run else ""
                out.print(f"{obj.kind.lower()}/{obj.name} {obj.action}{suffix}")
            services = [o.name for o in resp.objects if o.kind == "Service"]
            if wait and not dry_run and services:
                await wait_for_services(stub, services, timeout, err)

    _run(go())


@app.command()
def get(
    kind: Annotated[str, typer.Argument(help="nodes|networks|services|containers")],
    name: Annotated[str | None, typer.Argument()] = None,
    fmt: Annotated[str, typer.Option("-o", "--output", help="table|wide|json|yaml")] = "table",
) -> None:
    """List objects with their desired and observed state."""
    kind = _kind(kind)
    if fmt not in ("table", "wide", "json", "yaml"):
        raise CtlError(f"unknown output format {fmt!r} (expected table, wide, json or yaml)")

    async def go() -> None:
        async with connect(_state["where"]) as stub:
            resp = await stub.Get(controller_pb2.GetRequest(kind=kind, name=name or ""))
        output.render(kind, output.rows(kind, resp), fmt, out)

    _run(go())


@app.command()
def delete(
    kind: Annotated[str | None, typer.Argument()] = None,
    name: Annotated[str | None, typer.Argument()] = None,
    file: Annotated[Path | None, typer.Option("-f", "--filename")] = None,
) -> None:
    """Delete what FILE describes, or one object by KIND NAME."""
    if file is not None:
        req = controller_pb2.DeleteRequest(source=str(file), manifest=_read(file))
    elif kind and name:
        req = controller_pb2.DeleteRequest(kind=_kind(kind), name=name)
    else:
        raise CtlError("delete needs -f FILE or KIND NAME")

    async def go() -> None:
        async with connect(_state["where"]) as stub:
            resp = await stub.Delete(req)
        for obj in resp.objects:
            out.print(f"{obj.kind.lower()}/{obj.name} {obj.action}")

    _run(go())


@app.command(name="exec", context_settings={"allow_interspersed_args": False})
def exec_(
    container: Annotated[str, typer.Argument()],
    command: Annotated[list[str], typer.Argument(help="command and its arguments, after --")],
) -> None:
    """Run a command in a running container; exit with the command's code."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CtlError("exec needs a command after --")

    async def go() -> int:
        async with connect(_state["where"]) as stub:
            req = common_pb2.ExecRequest(container=container, argv=command)
            code = 125
            async for frame in stub.Exec(req):
                which = frame.WhichOneof("frame")
                if which == "stdout":
                    sys.stdout.buffer.write(frame.stdout)
                    sys.stdout.buffer.flush()
                elif which == "stderr":
                    sys.stderr.buffer.write(frame.stderr)
                    sys.stderr.buffer.flush()
                elif which == "exit_code":
                    code = frame.exit_code
            return code

    try:
        code = _run(go())
    except CtlError as exc:
        _fail(exc)
        raise typer.Exit(ExitCode.BERTH_FAILED) from exc
    raise typer.Exit(code)


@app.command()
def logs(
    container: Annotated[str, typer.Argument()],
    tail: Annotated[int | None, typer.Option("--tail", help="last N lines")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
    timestamps: Annotated[bool, typer.Option("-t", "--timestamps/--no-timestamps")] = True,
) -> None:
    """Print a container's output, with timestamps."""

    async def go() -> None:
        async with connect(_state["where"]) as stub:
            req = common_pb2.LogsRequest(container=container, follow=follow)
            if tail is not None:
                req.tail = tail
            async for entry in stub.Logs(req):
                stream = sys.stderr if entry.stream == "stderr" else sys.stdout
                prefix = f"{entry.time} " if timestamps else ""
                stream.write(prefix + entry.line.decode(errors="replace") + "\n")
                stream.flush()

    try:
        _run(go())
    except CtlError as exc:
        _fail(exc)
        raise typer.Exit(ExitCode.BERTH_FAILED) from exc


@app.command()
def netcheck(
    network: Annotated[str | None, typer.Argument(help="one network (default: all)")] = None,
    fmt: Annotated[str, typer.Option("-o", "--output", help="table|plain|json")] = "table",
) -> None:
    """Probe every pair of containers on each network (DNS, ICMP, TCP) and explain failures.

    Exits 9 when a pair does not behave as its network's driver promises.
    """
    from clusterctl import netcheck as check
    from clusterctl import netreport

    if fmt not in ("table", "plain", "json"):
        raise CtlError(f"unknown output format {fmt!r} (expected table, plain or json)")

    def progress(line: str) -> None:
        if err.is_terminal:
            err.print(line)

    report = _run(check.check(_state["where"], network, progress))
    print(netreport.as_json(report) if fmt == "json" else netreport.text(report, fmt))
    if not report.ok:
        raise typer.Exit(ExitCode.NETCHECK_FAILED)


@app.command()
def info(
    fmt: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """Versions, etcd members and their health, each node's host and drivers, certificates."""
    from clusterctl import info as render

    if fmt not in ("text", "json"):
        raise CtlError(f"unknown output format {fmt!r} (expected text or json)")

    async def go() -> controller_pb2.InfoResponse:
        async with connect(_state["where"]) as stub:
            resp: controller_pb2.InfoResponse = await stub.Info(controller_pb2.InfoRequest())
            return resp

    resp = _run(go())
    print(json.dumps(render.as_dict(resp), indent=2, sort_keys=True) if fmt == "json"
          else render.text(resp))


@image_app.command("load")
def image_load(file: Annotated[Path, typer.Argument(help="docker-save or OCI-layout tar")]) -> None:
    """Load an image archive into the cluster; every node gets it."""
    from clusterctl.images import load_image

    if not file.is_file():
        raise CtlError(f"{file}: no such file")
    try:
        refs = _run(load_image(_state["where"], file))
    except CtlError as exc:
        raise CtlError(f"{file}: {exc}", exit_code=exc.exit_code) from exc
    for ref in refs:
        out.print(f"Loaded image: {ref}")


def main() -> None:
    try:
        rc = app(standalone_mode=False)
    except CtlError as exc:
        _fail(exc)
        sys.exit(exc.exit_code)
    except UserError as exc:
        _fail(exc)
        sys.exit(ExitCode.USER_ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()

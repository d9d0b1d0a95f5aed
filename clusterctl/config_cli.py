"""``clusterctl config get-contexts|use-context|current-context``: the contexts file.

The file and the order in which a context is chosen are clusterctl.contexts'.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from berth.errors import UserError
from clusterctl import contexts

config_app = typer.Typer(no_args_is_help=True,
                         help="Contexts: which cluster clusterctl talks to, as whom.")


@config_app.command("get-contexts")
def get_contexts() -> None:
    """List the contexts; '*' marks the current one."""
    cfg = contexts.load()
    if not cfg.contexts:
        typer.echo(f"no contexts in {contexts.config_path()}")
        return
    rows = [("CURRENT", "NAME", "SERVER", "CERT")]
    for c in cfg.contexts:
        mark = "*" if c.name == cfg.current_context else ""
        rows.append((mark, c.name, c.server, c.cert or "(plaintext)"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row[:3], widths, strict=True))
                   + "  " + row[3])


@config_app.command("use-context")
def use_context(name: Annotated[str, typer.Argument(help="context name")]) -> None:
    """Make NAME the current context."""
    contexts.use(name)
    typer.echo(f"switched to context {name}")


@config_app.command("current-context")
def current_context() -> None:
    """Print the context this shell uses (BERTH_CONTEXT, else the file's current one)."""
    name = os.environ.get(contexts.CONTEXT_ENV) or contexts.load().current_context
    if not name:
        raise UserError(contexts.NO_CLUSTER)
    typer.echo(name)

"""``clusterctl pki init|add-node|renew|revoke|list``: the certificates of a cluster.

A thin layer over berth.pki: parse the options, call it, print one line per identity.
Errors are berth.errors.PkiError (a UserError): one line, exit 1, nothing half-written
(a key is created with O_EXCL before its certificate, and never overwritten).

On a running cluster, ``add-node --etcd`` and ``revoke --etcd`` also make or delete the
node's etcd user (berth.etcd.rbac), as DIR's admin. A revoked node's open etcd connection
outlives the CRL (etcd checks it per connection); its user's deletion refuses its next
request. add-node checks first that it can issue, then changes etcd, then writes the
files; revoke writes the revocation first (it stands even if etcd is unreachable; a
second run finishes the job).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer

from berth import pki
from berth.errors import PkiError
from berth.etcd import Etcd3Client, EtcdError, EtcdUnavailable, rbac

pki_app = typer.Typer(no_args_is_help=True, help="Make and manage the cluster's certificates.")

DirArg = Annotated[Path, typer.Argument(help="PKI directory (ca.crt, ca.key, <id>.crt/.key)")]
DaysOpt = Annotated[int, typer.Option("--days", help="validity of new certificates, in days")]
EtcdOpt = Annotated[str | None, typer.Option(
    "--etcd", metavar="HOST:PORT",
    help="a member of the running cluster's etcd: also add or delete the node's etcd user "
         "(as DIR's admin certificate)")]


def _named(option: str, values: list[str]) -> list[tuple[str, list[pki.San]]]:
    """``NAME=SAN[,SAN...]`` pairs of ``option``; a bad name or SAN is one line."""
    pairs = []
    for value in values:
        name, sep, sans = value.partition("=")
        if not sep or not sans:
            raise PkiError(f"{option} {value!r}: expected NAME=IP[,IP|DNS...]")
        try:
            pairs.append((pki.check_name(name), pki.parse_sans([sans])))
        except PkiError as exc:
            raise PkiError(f"{option} {value!r}: {exc}") from exc
    return pairs


def _issue_or_keep(directory: Path, ident: pki.Identity, sans: list[pki.San], days: int) -> None:
    if pki.exists(directory, ident):
        typer.echo(f"{ident.stem}: exists, kept (renew --san changes its SANs)")
        return
    pki.issue(directory, ident, sans, days)
    typer.echo(f"{ident.stem}: created (CN {ident.cn})")


@pki_app.command("init")
def init(
    directory: DirArg,
    node: Annotated[list[str], typer.Option(
        "--node", help="NAME=IP[,IP|DNS...]: a node's agent certificate (repeatable)")] = [],  # noqa: B006
    controller_san: Annotated[list[str], typer.Option(
        "--controller-san", help="IP or DNS name the controller is reached by (repeatable, "
        "comma lists too)")] = [],  # noqa: B006
    etcd: Annotated[list[str], typer.Option(
        "--etcd", help="NAME=IP[,IP|DNS...]: an etcd member's certificate (repeatable)")] = [],  # noqa: B006
    days: DaysOpt = pki.LEAF_DAYS,
    ca_days: Annotated[int, typer.Option("--ca-days", help="validity of a new CA")] = pki.CA_DAYS,
) -> None:
    """Make a CA and the admin, controller, node and etcd certificates in DIR.

    DIR must be new, empty, or a berth PKI directory: then only what is missing is made.
    """
    pki.check_days(days)
    nodes, members = _named("--node", node), _named("--etcd", etcd)
    ctl_sans = pki.parse_sans(controller_san)
    if pki.ensure_dir(directory, days=ca_days):
        typer.echo(f"ca: created in {directory}")
    _issue_or_keep(directory, pki.Identity("admin"), [], days)
    _issue_or_keep(directory, pki.Identity("controller"), ctl_sans, days)
    for name, sans in nodes:
        _issue_or_keep(directory, pki.Identity("node", name), sans, days)
    for name, sans in members:
        _issue_or_keep(directory, pki.Identity("etcd", name), sans, days)


@pki_app.command("add-node")
def add_node(
    directory: DirArg,
    name: Annotated[str, typer.Argument(help="node name (its agent's --node)")],
    san: Annotated[list[str], typer.Option(
        "--san", help="IP or DNS name the agent is reached by (repeatable)")] = [],  # noqa: B006
    days: DaysOpt = pki.LEAF_DAYS,
    etcd: EtcdOpt = None,
) -> None:
    """Make node NAME's agent certificate (CN node:NAME) in an existing PKI directory.

    With --etcd, the node's etcd user and role are made too, confined to its own keys.
    """
    ident = pki.Identity("node", name)
    sans = pki.parse_sans(san)
    pki.check_can_issue(directory, ident, sans, days)
    if etcd is not None:
        _etcd_users(directory, etcd, name, rbac.add_node)
    pki.issue(directory, ident, sans, days)
    typer.echo(f"{ident.stem}: created (CN {ident.cn})")


def _identity(text: str) -> pki.Identity:
    """An identity id (``node-h1``, ``admin``); a bare node name means that node."""
    try:
        return pki.Identity.parse(text)
    except PkiError:
        if "-" not in text and ":" not in text:
            return pki.Identity("node", text)
        raise


@pki_app.command("renew")
def renew(
    directory: DirArg,
    ident: Annotated[str | None, typer.Argument(
        metavar="[ID]", help="admin, controller, node-NAME or etcd-NAME")] = None,
    within: Annotated[int | None, typer.Option(
        "--within", help="renew every certificate expiring within DAYS days")] = None,
    san: Annotated[list[str], typer.Option(
        "--san", help="replace ID's SANs with these (repeatable)")] = [],  # noqa: B006
    days: DaysOpt = pki.LEAF_DAYS,
) -> None:
    """Re-sign a certificate (same key) before it expires; or all that expire soon.

    Daemons read their certificate at start: restart them after a renewal.
    """
    if (ident is None) == (within is None):
        raise PkiError("renew takes an ID or --within DAYS (one of the two)")
    if not pki.is_pki_dir(directory):
        raise PkiError(f"{directory}: not a berth PKI directory (no ca.crt and ca.key)")
    if ident is not None:
        targets = [_identity(ident)]
    else:
        assert within is not None
        if san:
            raise PkiError("--san goes with one ID, not with --within")
        if not 0 <= within <= pki.MAX_DAYS:
            raise PkiError(f"--within {within}: use 0 to {pki.MAX_DAYS} days")
        targets = pki.expiring(directory, within)
        if not targets:
            typer.echo(f"nothing expires within {within} days")
    sans = pki.parse_sans(san) if san else None
    for target in targets:
        cert = pki.renew(directory, target, days=days, sans=sans)
        typer.echo(f"{target.stem}: renewed, valid until {_date(cert.not_valid_after_utc)}")


@pki_app.command("revoke")
def revoke(
    directory: DirArg,
    name: Annotated[str, typer.Argument(help="node name, or an ID such as node-h2")],
    etcd: EtcdOpt = None,
) -> None:
    """Refuse NAME's certificate from now on (its serial goes into DIR/revoked.json).

    Copy revoked.json next to every daemon's --tlscacert (they re-read it on change) and
    ca.crl to etcd's --client-crl-file (the playbook does both). With --etcd, a node's
    etcd user and role are deleted too.
    """
    ident = _identity(name)
    if etcd is not None and ident.kind != "node":
        raise PkiError(f"--etcd: only a node has an etcd user of its own, not {ident.stem}")
    serial = pki.revoke(directory, ident)
    typer.echo(f"{ident.stem}: revoked (serial {serial:x}) in {directory / pki.REVOKED}")
    if etcd is not None and ident.name is not None:
        _etcd_users(directory, etcd, ident.name, rbac.remove_node)


def _etcd_users(directory: Path, endpoint: str, node: str,
                change: Callable[[Etcd3Client, str], Awaitable[list[str]]]) -> None:
    """Run one berth.etcd.rbac change for ``node`` as DIR's admin; print what it did."""
    for stem in ("ca", "admin"):
        if not (directory / f"{stem}.crt").is_file():
            raise PkiError(f"--etcd: {directory} has no {stem}.crt to reach etcd with")

    async def run() -> list[str]:
        async with Etcd3Client(endpoint, ca_cert=str(directory / "ca.crt"),
                               cert_cert=str(directory / "admin.crt"),
                               cert_key=str(directory / "admin.key")) as client:
            return await change(client, node)

    try:
        changes = asyncio.run(run())
    except (EtcdError, EtcdUnavailable) as exc:
        raise PkiError(f"--etcd {endpoint}: {exc}") from exc
    for line in changes or [f"user {rbac.node_user(node)} was already so"]:
        typer.echo(f"node-{node}: etcd {line}")


@pki_app.command("list")
def list_(directory: DirArg) -> None:
    """Every certificate in DIR: CN, expiry, SANs, and whether it is revoked."""
    if not pki.is_pki_dir(directory):
        raise PkiError(f"{directory}: not a berth PKI directory (no ca.crt and ca.key)")
    revoked = pki.revoked_serials(directory / pki.REVOKED)
    ca = pki.load_cert(directory / "ca.crt")
    typer.echo(f"ca  CN {pki.common_name(ca)}  expires {_date(ca.not_valid_after_utc)}")
    for ident in pki.identities(directory):
        cert = pki.load_cert(directory / f"{ident.stem}.crt")
        sans = ",".join(str(s.value) for s in pki.current_sans(cert))
        state = "  REVOKED" if cert.serial_number in revoked else ""
        typer.echo(f"{ident.stem}  CN {ident.cn}  expires {_date(cert.not_valid_after_utc)}"
                   f"{'  SANs ' + sans if sans else ''}{state}")


def _date(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")

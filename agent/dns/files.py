"""The /etc/resolv.conf and /etc/hosts a container gets.

agent.network calls these when it writes a container's resolv.conf and hosts files:
``resolv_conf`` for a container on a user-defined network (the resolver it points at is
server.py's 127.0.0.11), ``upstream_resolv_conf`` for one without names to resolve (only
the default network ``bridge``, or ``none``), which gets the host's resolvers as Docker
gives a docker0 container. All return file content and do no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from agent.dns.errors import InvalidRecord
from agent.dns.server import RESOLVER_IP
from agent.dns.upstream import Upstream

# RFC 1123 host names, plus '_' which Docker container names may contain.
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")
_OPTION = re.compile(r"[a-z0-9-]+(:[0-9]+)?")

_LOOPBACK_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def resolv_conf(search: Iterable[str] = (), options: Iterable[str] = ("ndots:0",)) -> str:
    """A resolv.conf that sends every lookup to the embedded resolver.

    ``ndots:0`` by default, as Docker does: a single-label name such as
    ``web`` is tried as-is first instead of walking the search list.
    """
    domains = [_checked_host(d, "search domain") for d in search]
    opts = list(options)
    for opt in opts:
        if not _OPTION.fullmatch(opt):
            raise InvalidRecord(f"resolv.conf option {opt!r} is not valid")
    lines = [f"nameserver {RESOLVER_IP}"]
    if domains:
        lines.append("search " + " ".join(domains))
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + "\n"


def upstream_resolv_conf(upstreams: Iterable[Upstream], host_text: str = "") -> str:
    """The resolvers the agent forwards to (the host's, loopback dropped, unless the
    operator named others), with the host's ``search`` and ``options`` lines.

    No upstream at all (the lab's ``--dns-upstreams none``) gives a file without
    nameservers: lookups fail at once instead of waiting on an address nobody serves.
    """
    lines = ["# berth: the node's resolvers (no embedded DNS on this network)"]
    lines += [f"nameserver {_checked_ip(u.ip)}" for u in upstreams if u.port == 53]
    for line in host_text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] not in ("search", "options"):
            continue
        # The host's file is copied, not trusted: whatever does not parse is left out.
        kept = [f for f in fields[1:]
                if (_HOSTNAME.fullmatch(f) and ".." not in f if fields[0] == "search"
                    else _OPTION.fullmatch(f))]
        if kept:
            lines.append(f"{fields[0]} {' '.join(kept)}")
    return "\n".join(lines) + "\n"


def hosts_file(name: str, ips: Iterable[str], extra: Iterable[tuple[str, str]] = ()) -> str:
    """An /etc/hosts naming the container's own addresses, plus ``extra``
    ``(hostname, ip)`` pairs (Docker's ``--add-host``)."""
    host = _checked_host(name, "hostname")
    lines = [_LOOPBACK_HOSTS]
    for ip in ips:
        lines.append(f"{_checked_ip(ip)}\t{host}\n")
    for extra_name, ip in extra:
        lines.append(f"{_checked_ip(ip)}\t{_checked_host(extra_name, 'extra host')}\n")
    return "".join(lines)


def _checked_host(name: str, what: str) -> str:
    if not _HOSTNAME.fullmatch(name) or ".." in name:
        raise InvalidRecord(f"{what} {name!r} is not a valid host name")
    return name


def _checked_ip(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError as exc:
        raise InvalidRecord(f"{ip!r} is not an IP address") from exc

"""The in-memory name table behind the embedded DNS resolver.

The agent feeds it from its etcd watch on /berth/endpoints/ (``set_endpoint`` /
``remove_endpoint`` per event, ``replace_all`` after a re-list); the resolver
(answers.py) reads it with ``lookup`` and ``reverse``. Nothing here does I/O.

A container ``web-2`` of service ``web`` with aliases ``[frontend]`` and IP X on
network ``appnet`` registers three names on appnet only: ``web-2``, ``web``
(shared by every replica, so it returns all of their IPs) and ``frontend``.
Names are case-insensitive and a trailing dot is ignored. Docker also answers
``<name>.<network>``; so do we, but only for networks in the caller's scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from agent.dns.errors import InvalidRecord
from berth.keyspace import ContainerName, NetworkName

_MAX_NAME = 253


class EndpointLike(Protocol):
    """What ``replace_all`` needs; berth.records.Endpoint satisfies it."""

    @property
    def network(self) -> str: ...
    @property
    def container(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def ip(self) -> str: ...
    @property
    def aliases(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class DnsEndpoint:
    """One container's address on one network, reduced to what DNS needs."""

    network: str
    container: str
    service: str
    ip: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Entry:
    names: frozenset[str]        # container name, service name, aliases; normalised
    container: str               # as registered, for PTR answers
    ip: ipaddress.IPv4Address


@dataclass
class _Network:
    entries: dict[str, _Entry] = field(default_factory=dict)
    # Derived from entries on every change; lookups are far more frequent than writes.
    by_name: dict[str, set[ipaddress.IPv4Address]] = field(default_factory=dict)
    by_ip: dict[ipaddress.IPv4Address, set[str]] = field(default_factory=dict)

    def reindex(self) -> None:
        self.by_name = {}
        self.by_ip = {}
        for entry in self.entries.values():
            for name in entry.names:
                self.by_name.setdefault(name, set()).add(entry.ip)
            self.by_ip.setdefault(entry.ip, set()).add(entry.container)


def normalize(name: str) -> str:
    """Lower-case and strip one trailing dot: the table's key form of a name."""
    return name[:-1].lower() if name.endswith(".") else name.lower()


def _checked_name(name: str, what: str) -> str:
    key = normalize(name)
    if not key or len(key) > _MAX_NAME or any(not label for label in key.split(".")):
        raise InvalidRecord(f"{what} {name!r} is not a valid DNS name")
    if any(ch.isspace() for ch in key):
        raise InvalidRecord(f"{what} {name!r} contains whitespace")
    return key


def _checked_ip(ip: str, container: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(ip)
    except ValueError as exc:
        raise InvalidRecord(f"{container}: {ip!r} is not an IPv4 address") from exc


class Records:
    """Per network: name -> set of IPv4 addresses, and IP -> container names."""

    def __init__(self) -> None:
        self._networks: dict[str, _Network] = {}
        self._turn = 0

    def set_endpoint(
        self,
        network: NetworkName,
        container: ContainerName,
        service: str,
        ip: str,
        aliases: Iterable[str] = (),
    ) -> None:
        """Register (or replace) ``container``'s address on ``network``."""
        entry = self._entry(container, service, ip, aliases)
        net = self._networks.setdefault(network, _Network())
        net.entries[container] = entry
        net.reindex()

    def remove_endpoint(self, network: NetworkName, container: ContainerName) -> None:
        """Forget ``container`` on ``network``; a no-op if it was never there."""
        net = self._networks.get(network)
        if net is None or net.entries.pop(container, None) is None:
            return
        if net.entries:
            net.reindex()
        else:
            del self._networks[network]

    def replace_all(self, endpoints: Iterable[EndpointLike]) -> None:
        """Swap in a whole re-listed table; on a bad record the old table stays."""
        fresh: dict[str, _Network] = {}
        for ep in endpoints:
            entry = self._entry(ep.container, ep.service, ep.ip, ep.aliases)
            fresh.setdefault(ep.network, _Network()).entries[ep.container] = entry
        for net in fresh.values():
            net.reindex()
        self._networks = fresh

    def lookup(self, name: str, networks: Iterable[str]) -> list[str]:
        """IPv4 addresses of ``name`` across ``networks`` only, rotated per call.

        Rotation spreads clients over a service's replicas the way Docker's
        shuffled answers do, while staying deterministic for tests.
        """
        key = normalize(name)
        scope = set(networks)
        found: set[ipaddress.IPv4Address] = set()
        for network in scope:
            net = self._networks.get(network)
            if net is not None:
                found |= net.by_name.get(key, set())
        short, _, suffix = key.rpartition(".")
        if short and suffix in scope and suffix in self._networks:
            found |= self._networks[suffix].by_name.get(short, set())
        ordered = sorted(found)
        if len(ordered) > 1:
            self._turn += 1
            shift = self._turn % len(ordered)
            ordered = ordered[shift:] + ordered[:shift]
        return [str(ip) for ip in ordered]

    def known(self, name: str) -> bool:
        """Whether ``name`` exists on any network, in scope or not."""
        key = normalize(name)
        if any(key in net.by_name for net in self._networks.values()):
            return True
        short, _, suffix = key.rpartition(".")
        return bool(short) and short in self._networks.get(suffix, _Network()).by_name

    def reverse(self, ip: str, networks: Iterable[str]) -> list[str]:
        """Container names holding ``ip`` on ``networks`` (for PTR), sorted."""
        addr = _parse_ip(ip)
        if addr is None:
            return []
        names: set[str] = set()
        for network in set(networks):
            net = self._networks.get(network)
            if net is not None:
                names |= net.by_ip.get(addr, set())
        return sorted(names)

    def reverse_known(self, ip: str) -> bool:
        """Whether any network has a container at ``ip``."""
        addr = _parse_ip(ip)
        return addr is not None and any(addr in n.by_ip for n in self._networks.values())

    def networks(self) -> frozenset[str]:
        """Networks that currently hold at least one endpoint."""
        return frozenset(self._networks)

    @staticmethod
    def _entry(container: str, service: str, ip: str, aliases: Iterable[str]) -> _Entry:
        names = {_checked_name(container, "container name")}
        if service:
            names.add(_checked_name(service, f"{container}: service name"))
        names.update(_checked_name(a, f"{container}: alias") for a in aliases)
        return _Entry(frozenset(names), container, _checked_ip(ip, container))


def _parse_ip(ip: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(ip)
    except ValueError:
        return None

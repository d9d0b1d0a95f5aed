"""The kinds people name on the command line, with their aliases: one table for all.

clusterctl checks a kind before it calls the controller; the controller's Get and
Delete accept the same words (kubectl's short names: ``no``, ``svc``; and berth's
``net``, ``ctr``). Only services and networks are declared in manifests; nodes and
containers are only ever read.
"""

from __future__ import annotations

RESOURCES = ("nodes", "networks", "services", "containers")
ALIASES: dict[str, str] = {
    **{plural: plural for plural in RESOURCES},
    **{plural[:-1]: plural for plural in RESOURCES},
    "no": "nodes",
    "net": "networks",
    "svc": "services",
    "ctr": "containers",
}
# The resources a manifest declares, and the document kind that declares them.
DECLARED = {"services": "Service", "networks": "Network"}


def resource(word: str) -> str | None:
    """``svc``/``service``/``Services`` -> ``services``; None for an unknown word."""
    return ALIASES.get(word.lower())


def declared_kind(word: str) -> str | None:
    """``svc``/``Service`` -> ``Service``: the manifest kind, or None (unknown, or read-only)."""
    found = resource(word)
    return DECLARED.get(found) if found else None

"""Where the agent keeps what each ADD did, so CHECK and DEL get it back.

One JSON file per container and network under <state>/netresults/, written
atomically. Besides the driver's AttachResult it keeps the NetConf and the Attachment
that ADD used (its published ports and default route included): like CNI's DEL,
tearing down then needs nothing else, not even the network's spec (which may be gone
by then: a deleted service, a restarted agent). Files written before the NetConf was
kept hold a bare AttachResult, and older ones only the ifname; they still load.
Owned by agent.network.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pydantic

from berth.records import is_plain_name
from netplugins.contract import Attachment, AttachResult, NetConf


@dataclass(frozen=True)
class Stored:
    """What ADD did on one network, and with what: enough for a DEL on its own."""

    result: AttachResult
    net: NetConf | None = None      # None: an old file that held only the result
    ifname: str = ""
    attachment: Attachment | None = None   # None: written before it was kept


_STORED = pydantic.TypeAdapter(Stored)


class ResultStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, container: str, network: str) -> Path:
        """The file for one attachment; names that are not one plain segment are refused
        here too, even though berth.records already refuses them where specs load."""
        for what, name in (("container", container), ("network", network)):
            if not is_plain_name(name):
                raise ValueError(f"invalid {what} name {name!r} for a network result")
        return self._root / container / f"{network}.json"

    def load_stored(self, container: str, network: str) -> Stored | None:
        try:
            raw = self._path(container, network).read_bytes()
        except OSError:
            return None
        try:
            return _STORED.validate_json(raw)
        except pydantic.ValidationError:
            pass
        try:
            return Stored(AttachResult.from_json(raw))
        except ValueError:
            return None

    def load(self, container: str, network: str) -> AttachResult | None:
        stored = self.load_stored(container, network)
        return stored.result if stored else None

    def store(self, container: str, network: str, result: AttachResult, net: NetConf,
              att: Attachment) -> None:
        path = self._path(container, network)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(_STORED.dump_json(Stored(result, net, att.ifname, att)))
        tmp.replace(path)

    def remove(self, container: str, network: str) -> None:
        self._path(container, network).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self._root / container).rmdir()

    def networks_of(self, container: str) -> list[str]:
        if not is_plain_name(container):
            return []
        return sorted(p.stem for p in (self._root / container).glob("*.json"))

    def networks(self) -> set[str]:
        """Every network some container on this node still has a result for."""
        return {p.stem for p in self._root.glob("*/*.json")}

    def in_use(self, network: str) -> bool:
        if not is_plain_name(network):
            return False
        return any(True for _ in self._root.glob(f"*/{network}.json"))

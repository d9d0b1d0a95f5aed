"""Where the agent keeps each AttachResult, so CHECK and DEL get back what ADD did.

One JSON file per container and network under <state>/netresults/, written
atomically. Owned by agent.network.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from netplugins.contract import AttachResult


class ResultStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, container: str, network: str) -> Path:
        return self._root / container / f"{network}.json"

    def load(self, container: str, network: str) -> AttachResult | None:
        try:
            return AttachResult.from_json(self._path(container, network).read_bytes())
        except (OSError, ValueError):
            return None

    def store(self, container: str, network: str, result: AttachResult) -> None:
        path = self._path(container, network)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(result.to_json())
        tmp.replace(path)

    def remove(self, container: str, network: str) -> None:
        self._path(container, network).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self._root / container).rmdir()

    def networks_of(self, container: str) -> list[str]:
        return sorted(p.stem for p in (self._root / container).glob("*.json"))

    def in_use(self, network: str) -> bool:
        return any(True for _ in self._root.glob(f"*/{network}.json"))

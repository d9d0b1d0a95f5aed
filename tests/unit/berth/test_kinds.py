from __future__ import annotations

import pytest

from berth import kinds


@pytest.mark.parametrize(("word", "resource", "declared"), [
    ("svc", "services", "Service"), ("Service", "services", "Service"),
    ("networks", "networks", "Network"), ("net", "networks", "Network"),
    ("no", "nodes", None), ("ctr", "containers", None), ("pods", None, None),
], ids=["svc", "Service", "networks", "net", "no", "ctr", "unknown"])
def test_one_alias_table(word: str, resource: str | None, declared: str | None) -> None:
    assert kinds.resource(word) == resource
    assert kinds.declared_kind(word) == declared

"""Agent.NetDiag takes names from the wire and builds file paths from them (the stored
ADD results): anything but one plain path segment is refused before any read."""

from __future__ import annotations

from typing import Any

import pytest

from agent.netdiag import diagnose
from berth.errors import UserError
from protos import netcheck_pb2


class Untouchable:
    """A NetView that fails the test if netdiag reads anything of the agent."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"netdiag read {name} before checking the request")


@pytest.mark.parametrize(
    ("network", "local"),
    [("../../etc", "web-1"), ("appnet", "../web-1"), ("appnet", "a/b"), ("..", "web-1"),
     ("appnet", ""), ("", "web-1"), ("appnet", "x" * 300), ("app\x00net", "web-1"),
     ("appnet", "web..1")],
    ids=["dotdot-network", "dotdot-container", "slash", "dotdot-alone", "empty-container",
         "empty-network", "too-long", "nul", "double-dot"],
)
async def test_bad_names_are_refused_before_any_read(network: str, local: str) -> None:
    req = netcheck_pb2.NetDiagRequest(network=network, driver="overlay", vni=256,
                                      subnet="10.42.0.0/24", local=[local])
    with pytest.raises(UserError, match="is not a valid name"):
        await diagnose(Untouchable(), req)

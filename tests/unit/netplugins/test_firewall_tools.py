"""The firewall without its tools: a missing nft is one clear error, a missing iptables
means there is no Docker policy to live with (nothing to insert, nothing to complain of)."""

from __future__ import annotations

import pytest

from netplugins.errors import KernelError
from netplugins.firewall import Firewall
from netplugins.firewall.command import HostCommands
from netplugins.firewall.docker import DockerForward

MISSING = "/nonexistent/berth-test-tool"


async def test_missing_nft_is_one_clear_error() -> None:
    fw = Firewall(None, nft=MISSING, iptables=MISSING)
    with pytest.raises(KernelError, match=f"^{MISSING} is not installed"):
        await fw.state()


async def test_missing_iptables_means_no_forward_policy() -> None:
    docker = DockerForward(HostCommands(None), MISSING)
    assert await docker.policy_drops() is False
    assert await docker.ensure("bb-1", ("bb-1",)) == []
    assert await docker.missing("bb-1", ("bb-1",)) == []


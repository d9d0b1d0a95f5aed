"""A simulated node for agent tests with real runc: a netns, and a Runtime whose runc
runs inside it.

The agent runs inside its node's network namespace; in tests runc is started inside one
the test makes (``bt-nm-<random>``, lo and an eth0 with a 10.77.x.2/24 address) through a
wrapper (``nsenter --net=... runc``), so host-mode containers share that namespace and
never the machine's own. The fixtures remove every container, mount, cgroup and
namespace they made, also when the test fails. tests/integration/conftest.py imports the
fixtures (``node_ns``, ``node_image``, ``node_rt``).
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.runtime import cgroups, rootfs
from agent.runtime.containers import Runtime
from berth.busybox import build_busybox_image
from tests import needs


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


@dataclass(frozen=True)
class NodeNs:
    name: str
    ip: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"


@pytest.fixture
def node_ns() -> Iterator[NodeNs]:
    """A simulated host: lo and an eth0 (a veth; this kernel has no dummy module)."""
    needs.root()
    node = NodeNs(f"bt-nm-{secrets.token_hex(3)}", f"10.77.{secrets.randbelow(200) + 20}.2")
    sh("ip", "netns", "add", node.name)
    try:
        ns = ("ip", "-n", node.name)
        sh(*ns, "link", "set", "lo", "up")
        sh(*ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        sh(*ns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
        sh(*ns, "link", "set", "eth0p", "up")
        sh(*ns, "link", "set", "eth0", "up")
        yield node
    finally:
        subprocess.run(["ip", "netns", "del", node.name], check=False)


@pytest.fixture(scope="session")
def node_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_image(tmp_path_factory.mktemp("image") / "busybox.tar")


@pytest.fixture
async def node_rt(tmp_path: Path, node_image: Path, node_ns: NodeNs) -> AsyncIterator[Runtime]:
    runc = needs.tool("runc", "runc")
    needs.tool("conmon", "conmon")
    needs.tool("nsenter", "util-linux")
    wrapper = tmp_path / "runc-in-node"
    wrapper.write_text(f'#!/bin/sh\nexec nsenter --net={node_ns.path} {runc} "$@"\n')
    wrapper.chmod(0o700)
    runtime = Runtime(tmp_path / "state", tmp_path / "runc", f"bt-nm-{uuid.uuid4().hex[:8]}",
                      runtime_bin=str(wrapper))
    runtime.images.load(node_image)
    try:
        yield runtime
    finally:
        for c in await runtime.list():
            await runtime.delete(c.name)
        for path in sorted(rootfs.mountpoints(), reverse=True):
            if path.startswith(str(tmp_path)):
                await asyncio.to_thread(subprocess.run, ["umount", "-l", path], check=False)
        cgroups.remove_cgroup(runtime.cgroup_parent)


async def sh_in(rt: Runtime, name: str, script: str) -> str:
    proc = await rt.exec(name, ["sh", "-c", script])
    out = b"".join([chunk async for stream, chunk in proc if stream == "stdout"])
    assert await proc == 0, script
    return out.decode()

"""network_mode in the runtime: what each mode puts in the OCI config (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.runtime.bundle import ContainerFiles, build_config
from agent.runtime.errors import SpecError
from agent.runtime.images import Image
from agent.runtime.netmode import NetworkMode, Sandbox, parse_network_mode
from berth.records import ContainerSpec, NetworkAttachment, PortMapping

IMAGE = Image(ref="docker.io/library/x:latest", id="sha256:" + "0" * 64, layers=(),
              entrypoint=None, cmd=("sh",), env=("PATH=/bin",), workdir="", user="")


def spec(**kw: object) -> ContainerSpec:
    return ContainerSpec(name="web-1", service="web", node="h2", image="x", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("", NetworkMode("default"), id="default"),
        pytest.param("none", NetworkMode("none"), id="none"),
        pytest.param("host", NetworkMode("host"), id="host"),
        pytest.param("container:db-1", NetworkMode("container", "db-1"), id="container"),
    ],
)
def test_modes_parse(mode: str, expected: NetworkMode) -> None:
    assert parse_network_mode(spec(network_mode=mode)) == expected


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        pytest.param({"network_mode": "bridge"}, "expected none, host or container:<name>",
                     id="unknown"),
        pytest.param({"network_mode": "container:"}, "not a container name", id="no-target"),
        pytest.param({"network_mode": "container:../x"}, "not a container name",
                     id="path-target"),
        pytest.param({"network_mode": "container:web-1"}, "its own network namespace",
                     id="itself"),
        pytest.param({"network_mode": "host",
                      "ports": (PortMapping(container_port=80, host_port=80),)},
                     "network_mode host: ports cannot be used with it", id="host-ports"),
        pytest.param({"network_mode": "container:db-1",
                      "networks": (NetworkAttachment(network="a", driver="overlay"),)},
                     "network_mode container:db-1: networks cannot be used with it",
                     id="container-networks"),
    ],
)
def test_modes_that_cannot_be_carried_out_are_refused(kw: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        parse_network_mode(spec(**kw))
    assert str(info.value).startswith("web-1: network_mode ")


def config(tmp_path: Path, sandbox: Sandbox | None) -> dict[str, object]:
    files = ContainerFiles(tmp_path / "h", tmp_path / "n", tmp_path / "r")
    return build_config(spec(), IMAGE, tmp_path, files, "berth", sandbox)


@pytest.mark.parametrize(
    ("sandbox", "namespaces", "hostname"),
    [
        pytest.param(None, [{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                            {"type": "ipc"}, {"type": "network"}], "web-1", id="default"),
        pytest.param(Sandbox("new", "web-1"),
                     [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"},
                      {"type": "network"}], "web-1", id="none"),
        pytest.param(Sandbox("host", "h2"),
                     [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}],
                     "h2", id="host"),
        pytest.param(Sandbox("path", "db-1", "/proc/77/ns/net"),
                     [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"},
                      {"type": "network", "path": "/proc/77/ns/net"}], "db-1", id="container"),
    ],
)
def test_each_mode_in_the_oci_config(tmp_path: Path, sandbox: Sandbox | None,
                                     namespaces: list[dict[str, str]], hostname: str) -> None:
    cfg = config(tmp_path, sandbox)
    linux = cfg["linux"]
    assert isinstance(linux, dict) and linux["namespaces"] == namespaces
    assert cfg["hostname"] == hostname
    process = cfg["process"]
    assert isinstance(process, dict) and f"HOSTNAME={hostname}" in process["env"]


def test_the_etc_files_given_are_the_ones_mounted(tmp_path: Path) -> None:
    """A joiner is given its target's files; they are what /etc/hosts etc. show."""
    target = ContainerFiles(Path("/t/hosts"), Path("/t/hostname"), Path("/t/resolv.conf"))
    cfg = build_config(spec(), IMAGE, tmp_path, target, "berth",
                       Sandbox("path", "db-1", "/proc/77/ns/net"))
    mounts = cfg["mounts"]
    assert isinstance(mounts, list)
    binds = {m["destination"]: m["source"] for m in mounts if m["type"] == "bind"}
    assert binds == {"/etc/hosts": "/t/hosts", "/etc/hostname": "/t/hostname",
                     "/etc/resolv.conf": "/t/resolv.conf"}

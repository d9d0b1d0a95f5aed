"""Hostile names never reach the agent's state directories.

Assignment records come from etcd, which a compromised controller (or a bug) could fill
with anything. Container and network names become path segments on the node, so a
name like ``../../etc`` must be refused where the record loads and again where the
path is built.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

from agent.netresults import ResultStore
from berth.records import ContainerSpec, ContainerStatus, NetworkAttachment, is_plain_name

HOSTILE = ["..", ".", "", "../x", "a/b", "/abs", "-dash", "a\x00b", "a b", "x" * 254, "é"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_not_plain(name: str) -> None:
    assert not is_plain_name(name)


@pytest.mark.parametrize("name", ["web-1", "h1", "berth-gwbridge", "a.b_c", "x" * 253])
def test_ordinary_names_are_plain(name: str) -> None:
    assert is_plain_name(name)


@pytest.mark.parametrize("field", ["name", "service", "node"])
def test_an_assignment_with_a_path_in_a_name_does_not_load(field: str) -> None:
    raw = {"name": "web-1", "service": "web", "node": "h1", "image": "busybox"}
    raw[field] = "../../etc"
    with pytest.raises(pydantic.ValidationError):
        ContainerSpec.loads(json.dumps(raw))


def test_an_attachment_or_status_with_a_path_does_not_load() -> None:
    with pytest.raises(pydantic.ValidationError):
        NetworkAttachment.loads(json.dumps({"network": "../up", "driver": "bridge"}))
    with pytest.raises(pydantic.ValidationError):
        ContainerStatus.loads(json.dumps({"name": "a/b", "node": "h1", "state": "running"}))


@pytest.mark.parametrize(("container", "network"), [("../x", "net"), ("web-1", "../../n"),
                                                      ("web-1", "a/b"), ("..", "net")])
def test_result_store_refuses_paths_outside_its_root(
        tmp_path: Path, container: str, network: str) -> None:
    root = tmp_path / "netresults"
    store = ResultStore(root)
    with pytest.raises(ValueError, match="invalid"):
        store.remove(container, network)
    with pytest.raises(ValueError, match="invalid"):
        store.load_stored(container, network)
    assert store.networks_of(container) == [] or container == "web-1"
    assert not store.in_use(network) or network == "net"
    assert sorted(p.name for p in tmp_path.iterdir()) == []

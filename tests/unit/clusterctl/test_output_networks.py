"""What `get containers` and `get networks` print for ports and the default network
(clusterctl.output), from the controller's Get response."""

from __future__ import annotations

import io
import json

from rich.console import Console

from clusterctl.output import render, rows
from protos import controller_pb2 as pb

RESPONSE = pb.GetResponse(
    containers=[pb.Container(
        name="web-1", service="web", node="h1", state="running",
        ports=[pb.PortBinding(host_ip="0.0.0.0", host_port=8080, container_port=80,
                              protocol="tcp"),
               pb.PortBinding(host_ip="127.0.0.1", host_port=32768, container_port=53,
                              protocol="udp")]),
        pb.Container(name="side-1", service="side", node="h1", state="running",
                     network_mode="container:web-1")],
    networks=[pb.Network(name="bridge", driver="bridge", subnet="172.17.0.0/16",
                         gateway="172.17.0.1", nodes=["h1", "h2"], options={"icc": "true"}),
              pb.Network(name="appnet", driver="overlay", subnet="10.42.0.0/24", vni=4096)])


def _printed(kind: str, fmt: str) -> str:
    out = io.StringIO()
    render(kind, rows(kind, RESPONSE), fmt, Console(file=out, width=250))
    return out.getvalue()


def test_wide_containers_show_ports_as_docker_does() -> None:
    lines = _printed("containers", "wide").splitlines()
    assert "PORTS" in lines[0]
    assert "0.0.0.0:8080->80/tcp,127.0.0.1:32768->53/udp" in lines[1]
    assert "PORTS" not in _printed("containers", "table")


def test_json_containers_carry_ports_and_network_mode() -> None:
    web, side = rows("containers", RESPONSE)
    assert web["ports"] == [
        {"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "protocol": "tcp"},
        {"host_ip": "127.0.0.1", "host_port": 32768, "container_port": 53, "protocol": "udp"}]
    assert (web["network_mode"], side["network_mode"], side["ports"]) == (
        "", "container:web-1", [])


def test_networks_list_the_default_network_with_its_nodes(capsys: object) -> None:
    table = _printed("networks", "table").splitlines()
    assert table[0].split() == ["NAME", "DRIVER", "SUBNET", "VNI", "ENDPOINTS", "NODES",
                                "STATUS"]
    assert table[1].split() == ["bridge", "bridge", "172.17.0.0/16", "-", "0", "h1,h2", "-"]
    assert table[2].split() == ["appnet", "overlay", "10.42.0.0/24", "4096", "0", "-", "-"]
    data = rows("networks", RESPONSE)
    assert json.loads(json.dumps(data))[0]["nodes"] == ["h1", "h2"]
    assert data[0]["options"] == {"icc": "true"} and data[1]["nodes"] == []

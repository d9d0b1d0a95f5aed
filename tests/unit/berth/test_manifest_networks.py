"""Manifest v1 networking fields: drivers and options, ports, network_mode (berth.manifest).

Each bad input is one line naming the file, the document and the path; equivalent
spellings store the same JSON, so re-applying one after the other is "unchanged".
"""

from __future__ import annotations

import json

import pytest

from berth.errors import ManifestError
from berth.manifest import NetworkDocument, ServiceDocument, load_manifest, parse_document

NET = """\
apiVersion: berth/v1
kind: Network
metadata: {name: lan}
spec:
  subnet: 10.9.0.0/24
"""
SVC = """\
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  image: busybox
"""


def _error(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest("app.yaml", text)
    message = str(info.value)
    assert "\n" not in message
    return message


def _stored(text: str) -> dict[str, object]:
    (doc,) = load_manifest("app.yaml", text)
    again = parse_document(doc.kind, doc.to_json())
    assert again == doc and again.to_json() == doc.to_json()
    spec: dict[str, object] = json.loads(doc.to_json())["spec"]
    return spec


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  driver: macvlan\n",
         "spec.options.parent: required for driver macvlan: the host interface the "
         "containers' MACs sit on, e.g. eth0 (or eth0.10 for VLAN 10)"),
        ("  driver: macvlan\n  options: {parent: eth0, mode: l2}\n",
         'spec.options.mode: unknown mode "l2" (expected bridge, vepa, private or passthru)'),
        ("  driver: macvlan\n  options: {parent: eth0/1}\n",
         "spec.options.parent: \"eth0/1\" is not an interface name (1-15 bytes, no '/', ':' "
         "or spaces)"),
        ("  driver: macvlan\n  options: {parent: a-very-long-name0}\n",
         "spec.options.parent: \"a-very-long-name0\" is not an interface name (1-15 bytes, "
         "no '/', ':' or spaces)"),
        ("  driver: bridge\n  options: {icc: maybe}\n",
         'spec.options.icc: unknown icc "maybe" (expected true or false)'),
        ("  driver: bridge\n  options: {enable_icc: 'false'}\n",
         'spec.options.enable_icc: unknown option "enable_icc" for driver bridge (it takes '
         "icc)"),
        ("  driver: macvlan\n  options: {parent: eth0, icc: 'false'}\n",
         'spec.options.icc: unknown option "icc" for driver macvlan (it takes parent, mode)'),
        ("  driver: none\n",
         'spec.driver: driver "none" is not a network driver here: use network_mode: none on '
         "the service"),
        ("  driver: ipvlan\n",
         'spec.driver: unknown driver "ipvlan" (expected one of overlay, bridge, macvlan)'),
        ("  mtu: 67\n", "spec.mtu: 67 is out of range (68-65535)"),
        ("  mtu: 65536\n", "spec.mtu: 65536 is out of range (68-65535)"),
        ("  mtu: '1400'\n", 'spec.mtu: wrong type: expected integer, got string "1400"'),
        ("  internal: 'yes'\n", 'spec.internal: wrong type: expected boolean, got string "yes"'),
        ("  ip_range: 10.9.1.0/25\n", "spec.ip_range: 10.9.1.0/25 is not inside the subnet "
                                      "10.9.0.0/24"),
        ("  ip_range: 10.9.0.1/25\n", "spec.ip_range: not an IPv4 CIDR: 10.9.0.1/25 has host "
                                      "bits set"),
        ("  aux_addresses: {router: 10.9.1.1}\n",
         "spec.aux_addresses.router: 10.9.1.1 is not a host address of 10.9.0.0/24"),
        ("  aux_addresses: {router: 10.9.0.255}\n",
         "spec.aux_addresses.router: 10.9.0.255 is not a host address of 10.9.0.0/24"),
        ("  aux_addresses: {router: gw}\n",
         "spec.aux_addresses.router: not an IPv4 address: Expected 4 octets in 'gw'"),
        ("  ipv6: true\n", "spec.ipv6: not supported yet"),
        ("  attachable: true\n", "spec.attachable: not supported yet"),
    ],
    ids=["macvlan-without-parent", "macvlan-unknown-mode", "parent-with-a-slash",
         "parent-too-long", "icc-not-boolean", "bridge-unknown-option",
         "macvlan-unknown-option", "none-is-not-a-driver", "unknown-driver", "mtu-too-small",
         "mtu-too-large", "mtu-string", "internal-string", "ip-range-outside",
         "ip-range-host-bits", "aux-outside", "aux-broadcast", "aux-not-an-ip",
         "ipv6-not-yet", "attachable-not-yet"],
)
def test_bad_network(extra: str, expected: str) -> None:
    assert _error(NET + extra) == f"app.yaml: Network/lan: {expected}"


@pytest.mark.parametrize(
    ("name", "why"),
    [("bridge", "it is the default network berth makes on every node (a service without "
                "networks joins it); pick another name"),
     ("berth-gwbridge", "it is the gateway bridge berth makes on every node; pick another "
                        "name"),
     ("host", "use network_mode: host on the service"),
     ("none", "use network_mode: none on the service")],
    ids=["bridge", "gwbridge", "host", "none"],
)
def test_reserved_network_names(name: str, why: str) -> None:
    assert _error(NET.replace("name: lan", f"name: {name}")) == (
        f'app.yaml: Network/{name}: metadata.name: network name "{name}" is reserved: {why}')


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  ports: ['70000:80']\n", "spec.ports[0]: host port 70000 is out of range (1-65535)"),
        ("  ports: ['8080:0']\n", "spec.ports[0]: container port 0 is out of range (1-65535)"),
        ("  ports: [{target: 80, published: 65536}]\n",
         "spec.ports[0].published: host port 65536 is out of range (1-65535)"),
        ("  ports: [{target: 0}]\n",
         "spec.ports[0].target: container port 0 is out of range (1-65535)"),
        ("  ports: ['8080:80', '9090:90', '8080:81']\n",
         "spec.ports[2]: host port 8080/tcp is published twice (also by spec.ports[0])"),
        ("  ports: ['127.0.0.1:8080:80', '8080:81']\n",
         "spec.ports[1]: host port 8080/tcp is published twice (also by spec.ports[0])"),
        ("  ports: ['8080-8081:80-81', {target: 90, published: '8081'}]\n",
         "spec.ports[1]: host port 8081/tcp is published twice (also by spec.ports[0])"),
        ("  ports: ['8080-8082:80-81']\n",
         "spec.ports[0]: host ports 8080-8082 and container ports 80-81 differ in length"),
        ("  ports: ['1-2000']\n",
         'spec.ports[0]: "1-2000" is 2000 ports, more than the limit of 1024 per service'),
        ("  ports: ['8080:80/sctp']\n", 'spec.ports[0]: protocol "sctp" is not supported yet'),
        ("  ports: ['8080:80/icmp']\n",
         'spec.ports[0]: unknown protocol "icmp" (expected tcp or udp)'),
        ("  ports: ['[::1]:8080:80']\n",
         'spec.ports[0]: IPv6 host_ip in "[::1]:8080:80" is not supported yet'),
        ("  ports: ['1.2.3:8080:80']\n",
         "spec.ports[0]: not an IPv4 address: Expected 4 octets in '1.2.3'"),
        ("  ports: ['a:b:c:d']\n",
         'spec.ports[0]: "a:b:c:d" is not [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]'),
        ("  ports: [true]\n",
         'spec.ports[0]: expected "[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]", a '
         "container port number or a mapping with target"),
        ("  ports: [{target: 80, mode: ingress}]\n",
         'spec.ports[0].mode: mode "ingress" (the routing mesh) needs IPVS, which this kernel '
         "lacks; publish in host mode (mode: host), on the node that runs the container"),
        ("  endpoint_mode: vip\n",
         'spec.endpoint_mode: endpoint_mode "vip" (a virtual IP per service) needs IPVS, which '
         "this kernel lacks; use endpoint_mode: dnsrr (the service name resolves to every "
         "replica)"),
        ("  ports: [{target: 80, name: web}]\n", "spec.ports[0].name: not supported yet"),
    ],
    ids=["host-port-out-of-range", "container-port-zero", "long-published-out-of-range",
         "long-target-zero", "host-port-twice", "any-address-overlaps-one",
         "range-overlaps-long", "range-lengths-differ", "range-too-long", "sctp-not-yet",
         "unknown-protocol", "ipv6-not-yet", "bad-host-ip", "too-many-colons", "boolean-port",
         "ingress-mode", "vip-endpoint-mode", "port-name-not-yet"],
)
def test_bad_ports(extra: str, expected: str) -> None:
    assert _error(SVC + extra) == f"app.yaml: Service/web: {expected}"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  network_mode: host\n  networks: [lan]\n",
         "spec.networks: container sharing network namespace with another container or host "
         "cannot be connected to any other network (network_mode: host)"),
        ("  network_mode: container:db-1\n  networks: [lan]\n",
         "spec.networks: container sharing network namespace with another container or host "
         "cannot be connected to any other network (network_mode: container:db-1)"),
        ("  network_mode: none\n  networks: {lan: {}}\n",
         "spec.networks: container cannot be connected to multiple networks with one of the "
         "networks in private (none) mode (network_mode: none)"),
        ("  network_mode: bridge\n  networks: [lan]\n",
         "spec.networks: use either network_mode or networks (bridge is the default network, "
         "which a service without networks joins) (network_mode: bridge)"),
        ("  network_mode: host\n  ports: ['80:80']\n",
         "spec.ports: conflicting options: port publishing and the host network mode (the "
         "container listens on the node's own ports) (network_mode: host)"),
        ("  network_mode: none\n  ports: ['80']\n",
         "spec.ports: conflicting options: port publishing and the none network mode (the "
         "container has only lo) (network_mode: none)"),
        ("  network_mode: container:db-1\n  ports: ['80']\n",
         "spec.ports: conflicting options: port publishing and the container type network "
         "mode (network_mode: container:db-1)"),
        ("  network_mode: service:db\n  ports: [{target: 80}]\n",
         "spec.ports: conflicting options: port publishing and the container type network "
         "mode (network_mode: service:db)"),
        ("  network_mode: container:db-1\n  hostname: web\n",
         "spec.hostname: conflicting options: hostname and the network mode "
         "(network_mode: container:db-1)"),
        ("  network_mode: service:db\n  dns: [10.0.0.2]\n",
         "spec.dns: conflicting options: dns and the network mode (network_mode: service:db)"),
        ("  hostname: web\n", "spec.hostname: not supported yet"),
        ("  network_mode: host\n  hostname: web\n", "spec.hostname: not supported yet"),
        ("  network_mode: vlan\n",
         'spec.network_mode: unknown network_mode "vlan" (expected bridge, host, none, '
         "container:<name> or service:<name>)"),
        ("  network_mode: 'container:'\n",
         'spec.network_mode: container:<name> needs a container name (a DNS label), got ""'),
        ("  network_mode: service:Db\n",
         'spec.network_mode: service:<name> needs a service name (a DNS label), got "Db"'),
    ],
    ids=["host-with-networks", "container-with-networks", "none-with-networks",
         "bridge-with-networks", "host-with-ports", "none-with-ports", "container-with-ports",
         "service-with-ports", "container-with-hostname", "service-with-dns",
         "hostname-not-yet", "hostname-not-yet-with-host", "unknown-mode", "empty-container",
         "bad-service-name"],
)
def test_bad_network_mode(extra: str, expected: str) -> None:
    assert _error(SVC + extra) == f"app.yaml: Service/web: {expected}"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("  ports: ['8080:80']\n", "  ports: [{target: 80, published: '8080'}]\n"),
        ("  ports: ['0.0.0.0:8080:80/tcp']\n",
         "  ports: [{target: 80, published: 8080, host_ip: 0.0.0.0, protocol: tcp, "
         "mode: host}]\n"),
        ("  ports: ['80']\n", "  ports: [80]\n"),
        ("  ports: ['8080-8081:80-81']\n", "  ports: ['8080:80', '8081:81']\n"),
        ("  network_mode: bridge\n", ""),
        ("  endpoint_mode: dnsrr\n", ""),
        ("  ports: []\n", ""),
    ],
    ids=["short-and-long", "any-address", "number-and-string", "range-and-list",
         "bridge-mode-is-default", "dnsrr-is-default", "no-ports"],
)
def test_equivalent_service_spellings_store_the_same(a: str, b: str) -> None:
    assert _stored(SVC + a) == _stored(SVC + b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("  driver: bridge\n", "  driver: bridge\n  options: {icc: 'true'}\n"),
        ("  driver: bridge\n  options: {icc: false}\n",
         "  driver: bridge\n  options: {icc: 'false'}\n"),
        ("  driver: macvlan\n  options: {parent: eth0}\n",
         "  driver: macvlan\n  options: {mode: bridge, parent: eth0}\n"),
        ("", "  driver: overlay\n  internal: false\n  options: {}\n  aux_addresses: {}\n"),
    ],
    ids=["icc-default", "icc-yaml-boolean", "macvlan-mode-default", "overlay-defaults"],
)
def test_equivalent_network_spellings_store_the_same(a: str, b: str) -> None:
    assert _stored(NET + a) == _stored(NET + b)


def test_stored_forms() -> None:
    ports = _stored(SVC + "  ports: ['8080:80', '127.0.0.1:8081:80/udp', '80']\n")
    assert ports["ports"] == [
        {"host_ip": "", "mode": "host", "protocol": "tcp", "published": 8080, "target": 80},
        {"host_ip": "127.0.0.1", "mode": "host", "protocol": "udp", "published": 8081,
         "target": 80},
        {"host_ip": "", "mode": "host", "protocol": "tcp", "published": None, "target": 80}]
    assert (ports["network_mode"], ports["endpoint_mode"]) == (None, "dnsrr")
    assert _stored(SVC + "  network_mode: service:db\n")["network_mode"] == "service:db"
    lan = _stored(NET + "  driver: macvlan\n  options: {parent: eth0.10}\n  ip_range: "
                        "10.9.0.128/25\n  aux_addresses: {router: 10.9.0.254}\n  mtu: 1400\n")
    assert lan == {"driver": "macvlan", "subnet": "10.9.0.0/24", "gateway": "10.9.0.1",
                   "ip_range": "10.9.0.128/25", "aux_addresses": {"router": "10.9.0.254"},
                   "internal": False, "mtu": 1400,
                   "options": {"mode": "bridge", "parent": "eth0.10"}}


def test_udp_and_tcp_or_two_addresses_on_one_port_are_fine() -> None:
    (web,) = load_manifest("app.yaml", SVC + "  ports: ['53:53/udp', '53:53/tcp', "
                           "'127.0.0.1:80:80', '127.0.0.2:80:81']\n")
    assert isinstance(web, ServiceDocument)
    assert [p.shown() for p in web.spec.published()] == [
        "53:53/udp", "53:53/tcp", "127.0.0.1:80:80/tcp", "127.0.0.2:80:81/tcp"]


def test_pool_and_node_locality() -> None:
    (lan,) = load_manifest("app.yaml", NET + "  driver: bridge\n  ip_range: 10.9.0.64/26\n")
    assert isinstance(lan, NetworkDocument)
    assert (str(lan.spec.pool()), lan.spec.node_local) == ("10.9.0.64/26", True)

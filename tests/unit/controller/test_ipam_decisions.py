"""IPAM and VNI decisions as pure functions (controller.ipam, controller.vni, berth.netaddr)."""

from __future__ import annotations

import ipaddress

import pytest

from berth.manifest import NetworkDocument, ServiceDocument, load_manifest
from berth.netaddr import mac_from_ip
from berth.records import ContainerSpec, NetworkAttachment, NodeRecord
from controller import getters
from controller.ipam import (
    AddressBook,
    AddressError,
    Allocation,
    orphans,
    pick_address,
    resolve,
)
from controller.placement import DesiredService
from controller.state import ClusterState
from controller.vni import FIRST_VNI, Owned, VniExhausted, VniTable, first_free
from netplugins.contract import mac_from_ip as driver_mac_from_ip

NET24 = ipaddress.IPv4Network("10.42.0.0/24")
NET30 = ipaddress.IPv4Network("10.9.0.0/30")


@pytest.mark.parametrize(
    ("subnet", "gateway", "taken", "static", "current", "want"),
    [
        (NET24, "10.42.0.1", {}, None, "", "10.42.0.2"),
        (NET24, "10.42.0.1", {"10.42.0.2": "db-1", "10.42.0.3": "db-2"}, None, "", "10.42.0.4"),
        (NET24, "10.42.0.1", {"10.42.0.2": "db-1", "10.42.0.4": "db-2"}, None, "", "10.42.0.3"),
        # The gateway in the middle of the range is skipped, and so is the network address.
        (NET30, "10.9.0.1", {}, None, "", "10.9.0.2"),
        (NET30, "10.9.0.2", {}, None, "", "10.9.0.1"),
        (NET24, "10.42.0.1", {"10.42.0.7": "web-1"}, None, "", "10.42.0.7"),
        (NET24, "10.42.0.1", {"10.42.0.7": "web-1"}, None, "10.42.0.9", "10.42.0.9"),
        (NET24, "10.42.0.1", {"10.42.0.9": "db-1"}, None, "10.42.0.9", "10.42.0.2"),
        (NET24, "10.42.0.1", {}, None, "10.42.0.1", "10.42.0.2"),
        (NET24, "10.42.0.1", {}, None, "10.43.0.5", "10.42.0.2"),
        (NET24, "10.42.0.1", {}, "10.42.0.50", "", "10.42.0.50"),
        (NET24, "10.42.0.1", {"10.42.0.50": "web-1"}, "10.42.0.50", "10.42.0.2", "10.42.0.50"),
    ],
    ids=["first-free", "next-after-taken", "fills-a-hole", "skips-gateway-and-network",
         "gateway-not-first", "reuses-own-leftover", "keeps-current", "current-taken-moves",
         "current-is-gateway", "current-outside-subnet", "static-free", "static-already-mine"],
)
def test_pick_address(
    subnet: ipaddress.IPv4Network, gateway: str, taken: dict[str, str], static: str | None,
    current: str, want: str,
) -> None:
    assert pick_address("appnet", subnet, gateway, taken, "web-1", static=static,
                        current=current) == want


@pytest.mark.parametrize(
    ("subnet", "taken", "static", "message"),
    [
        (NET30, {"10.9.0.2": "db-1"}, None, "network appnet: no free address left in 10.9.0.0/30"),
        (NET24, {"10.42.0.50": "db-1"}, "10.42.0.50",
         "network appnet: ip 10.42.0.50 is already used by db-1"),
        (NET24, {}, "10.42.0.255",
         "network appnet: ip 10.42.0.255 is not a free host address of 10.42.0.0/24"),
    ],
    ids=["exhausted", "static-taken", "static-broadcast"],
)
def test_pick_address_refuses(
    subnet: ipaddress.IPv4Network, taken: dict[str, str], static: str | None, message: str
) -> None:
    gateway = str(subnet.network_address + 1)
    with pytest.raises(AddressError) as info:
        pick_address("appnet", subnet, gateway, taken, "web-1", static=static)
    assert str(info.value) == message


def test_every_host_address_is_handed_out_once_and_never_reserved_ones() -> None:
    subnet = ipaddress.IPv4Network("10.5.0.0/28")
    taken: dict[str, str] = {}
    for index in range(13):     # 16 - network - broadcast - gateway
        taken[pick_address("n", subnet, "10.5.0.1", taken, f"c-{index}")] = f"c-{index}"
    assert set(taken) == {f"10.5.0.{i}" for i in range(2, 15)}
    with pytest.raises(AddressError):
        pick_address("n", subnet, "10.5.0.1", taken, "c-99")


def test_mac_is_the_drivers() -> None:
    # One definition: the MAC the controller decides is the one the driver sets.
    assert driver_mac_from_ip is mac_from_ip
    assert mac_from_ip("10.42.0.2") == "02:42:0a:2a:00:02"


def _network(name: str = "appnet", subnet: str = "10.42.0.0/24", driver: str = "overlay",
             ) -> NetworkDocument:
    text = (f"apiVersion: berth/v1\nkind: Network\nmetadata: {{name: {name}}}\n"
            f"spec: {{driver: {driver}, subnet: {subnet}}}\n")
    doc = load_manifest("n.yaml", text)[0]
    assert isinstance(doc, NetworkDocument)
    return doc


def _spec(name: str = "web-1", *networks: str) -> ContainerSpec:
    return ContainerSpec(name=name, service="web", node="host1", image="busybox",
                         networks=tuple(NetworkAttachment(network=n, driver="overlay")
                                        for n in networks))


def test_resolve_fills_every_field_and_claims() -> None:
    book = AddressBook.of([Allocation("appnet", "10.42.0.2", "db-1", 7)])
    res = resolve(_spec("web-1", "appnet"), {"appnet": _network()}, {"appnet": 4096}, book)
    (att,) = res.spec.networks
    assert (att.ip, att.prefixlen, att.gateway, att.mac, att.vni) == (
        "10.42.0.3", 24, "10.42.0.1", "02:42:0a:2a:00:03", 4096)
    assert res.claims == (Allocation("appnet", "10.42.0.3", "web-1"),)
    assert (res.kept, res.releases) == ((), ())


def test_resolve_is_stable_and_releases_dropped_networks() -> None:
    nets = {"appnet": _network(), "other": _network("other", "10.50.0.0/24")}
    vnis = {"appnet": 4096, "other": 4097}
    book = AddressBook()
    first = resolve(_spec("web-1", "appnet", "other"), nets, vnis, book)
    book.record(first, 11)
    again = resolve(first.spec, nets, vnis, book)
    assert again.spec == first.spec and not again.claims and not again.releases
    only_app = first.spec.model_copy(update={"networks": first.spec.networks[:1]})
    dropped = resolve(only_app, nets, vnis, book)
    assert [(a.network, a.ip, a.mod_revision) for a in dropped.releases] == [
        ("other", "10.50.0.2", 11)]


def test_resolve_without_vni_or_network_is_a_reason() -> None:
    with pytest.raises(AddressError, match="network appnet: no VNI allocated yet"):
        resolve(_spec("web-1", "appnet"), {"appnet": _network()}, {}, AddressBook())
    with pytest.raises(AddressError, match='network "gone" does not exist'):
        resolve(_spec("web-1", "gone"), {}, {}, AddressBook())


def test_orphans_are_unheld_containers_and_gone_networks() -> None:
    book = AddressBook.of([Allocation("appnet", "10.42.0.2", "web-1", 3),
                           Allocation("appnet", "10.42.0.3", "web-9", 4),
                           Allocation("gone", "10.60.0.2", "web-1", 5)])
    assert [(a.network, a.ip) for a in orphans(book, {"web-1"}, ["appnet"])] == [
        ("appnet", "10.42.0.3"), ("gone", "10.60.0.2")]


@pytest.mark.parametrize(
    ("used", "want"),
    [(set(), FIRST_VNI), ({FIRST_VNI}, FIRST_VNI + 1), ({FIRST_VNI, FIRST_VNI + 2}, FIRST_VNI + 1),
     ({1, 2, 4095}, FIRST_VNI)],
    ids=["empty", "next", "hole", "below-range-ignored"],
)
def test_first_free_vni(used: set[int], want: int) -> None:
    assert first_free(used) == want


def test_vni_exhausted_is_clear() -> None:
    with pytest.raises(VniExhausted, match="no free VNI left"):
        first_free(range(FIRST_VNI, (1 << 24)))


def test_get_containers_shows_a_full_subnet_as_pending_reason() -> None:
    net = _network(subnet="10.9.0.0/30")
    doc = load_manifest("s.yaml", "apiVersion: berth/v1\nkind: Service\nmetadata: {name: web}\n"
                        "spec: {replicas: 2, image: busybox, networks: [appnet]}\n")[0]
    assert isinstance(doc, ServiceDocument)
    state = ClusterState(
        revision=9, services={"web": DesiredService(doc, 5)}, networks={"appnet": net},
        nodes={"host1": NodeRecord(name="host1", address="192.0.2.1", agent_addr="x:1",
                                   bip="172.17.0.1/16", gwbridge="172.18.0.1/16")},
        vnis=VniTable(by_network={"appnet": Owned("4096", 3)}))
    ctrs = getters.get(state, "containers").containers
    # web-1 still fits (it shows up once the scheduler assigns it); web-2 never will.
    assert [(c.name, c.state, c.error) for c in ctrs] == [
        ("web-2", "pending", "network appnet: no free address left in 10.9.0.0/30")]

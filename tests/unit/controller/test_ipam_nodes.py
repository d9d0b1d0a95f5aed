"""IPAM for node-local networks and address pools (controller.ipam, controller.addrspace)."""

from __future__ import annotations

import pytest

from berth import keyspace
from berth.etcd import KVMeta, Listing
from berth.manifest import NetworkDocument, load_manifest
from berth.records import ContainerSpec, HostPrefix, NetworkAttachment, NodeRecord
from controller.ipam import (
    AddressBook,
    AddressError,
    Allocation,
    network_space,
    orphans,
    parse_allocations,
    resolve,
)


def _net(name: str, spec: str) -> NetworkDocument:
    doc = load_manifest("n.yaml", f"apiVersion: berth/v1\nkind: Network\nmetadata: "
                                  f"{{name: {name}}}\nspec: {spec}\n")[0]
    assert isinstance(doc, NetworkDocument)
    return doc


BR = _net("br", "{driver: bridge, subnet: 10.50.0.0/24}")
LAN = _net("lan", "{driver: macvlan, subnet: 192.168.5.0/29, options: {parent: eth0}, "
                  "ip_range: 192.168.5.0/29, aux_addresses: {router: 192.168.5.2}}")


def _node(name: str, bip: str = "172.17.0.1/16", address: str = "192.168.5.3/24"
          ) -> NodeRecord:
    return NodeRecord(name=name, address="192.168.5.3", agent_addr="x:1", bip=bip,
                      gwbridge="172.18.0.1/16",
                      addresses=(HostPrefix(cidr=address, device="eth0"),))


NODES = {"h1": _node("h1"), "h2": _node("h2", bip="172.30.0.1/24")}


def _spec(name: str, node: str, *atts: tuple[str, str]) -> ContainerSpec:
    return ContainerSpec(name=name, service=name.rsplit("-", 1)[0], node=node, image="x",
                         networks=tuple(NetworkAttachment(network=n, driver=d) for n, d in atts))


def test_each_node_reuses_a_bridge_subnet_under_its_own_keys() -> None:
    book = AddressBook()
    one = resolve(_spec("web-1", "h1", ("br", "bridge")), {"br": BR}, {}, book, nodes=NODES)
    book.record(one, 7)
    two = resolve(_spec("web-2", "h2", ("br", "bridge")), {"br": BR}, {}, book, nodes=NODES)
    three = resolve(_spec("web-3", "h1", ("br", "bridge")), {"br": BR}, {}, book, nodes=NODES)
    assert [r.spec.networks[0].ip for r in (one, two, three)] == [
        "10.50.0.2", "10.50.0.2", "10.50.0.3"]
    assert [c.key for c in (*one.claims, *two.claims)] == [
        "/berth/ipam/br/h1/10.50.0.2", "/berth/ipam/br/h2/10.50.0.2"]


def test_the_implicit_networks_take_the_nodes_subnets() -> None:
    spec = _spec("web-1", "h2", ("bridge", "bridge"))
    res = resolve(spec, {}, {}, AddressBook(), nodes=NODES)
    (att,) = res.spec.networks
    assert (att.ip, att.prefixlen, att.gateway, att.mac) == (
        "172.30.0.2", 24, "172.30.0.1", "02:42:ac:1e:00:02")
    assert res.claims == (Allocation("bridge", "172.30.0.2", "web-1", node="h2"),)
    old = {"h2": _node("h2", bip="")}
    with pytest.raises(AddressError) as info:
        resolve(spec, {}, {}, AddressBook(), nodes=old)
    assert str(info.value) == ("network bridge: node h2 reports no subnet for bridge (its "
                               "agent predates it)")


def test_a_changed_bip_moves_the_address_and_releases_the_old_key() -> None:
    book = AddressBook()
    first = resolve(_spec("web-1", "h1", ("bridge", "bridge")), {}, {}, book, nodes=NODES)
    book.record(first, 3)
    moved = {"h1": _node("h1", bip="172.31.0.1/24")}
    again = resolve(first.spec, {}, {}, book, nodes=moved)
    assert again.spec.networks[0].ip == "172.31.0.2"
    assert [a.key for a in again.releases] == ["/berth/ipam/bridge/h1/172.17.0.2"]
    assert [a.key for a in again.claims] == ["/berth/ipam/bridge/h1/172.31.0.2"]


def test_an_attachment_on_a_node_that_left_keeps_its_address() -> None:
    book = AddressBook()
    first = resolve(_spec("web-1", "h1", ("bridge", "bridge")), {}, {}, book, nodes=NODES)
    book.record(first, 3)
    again = resolve(first.spec, {}, {}, book, nodes={})
    assert again.spec == first.spec and not again.claims and not again.releases


def test_macvlan_skips_aux_addresses_gateway_and_the_nodes_own_addresses() -> None:
    book = AddressBook()
    ips = []
    for index in range(1, 4):
        res = resolve(_spec(f"web-{index}", "h1", ("lan", "macvlan")), {"lan": LAN}, {}, book,
                      nodes=NODES)
        book.record(res, 1)
        ips.append(res.spec.networks[0].ip)
    # .0 network, .1 gateway, .2 router (aux), .3 node h1/h2's eth0, .7 broadcast.
    assert ips == ["192.168.5.4", "192.168.5.5", "192.168.5.6"]
    with pytest.raises(AddressError) as info:
        resolve(_spec("web-4", "h1", ("lan", "macvlan")), {"lan": LAN}, {}, book, nodes=NODES)
    assert str(info.value) == "network lan: no free address left in 192.168.5.0/29"
    assert network_space(LAN, NODES).capacity() == 3


def test_ip_range_is_the_pool_but_a_static_ip_may_lie_outside_it() -> None:
    net = _net("br", "{driver: bridge, subnet: 10.50.0.0/24, ip_range: 10.50.0.128/25}")
    res = resolve(_spec("web-1", "h1", ("br", "bridge")), {"br": net}, {}, AddressBook(),
                  nodes=NODES)
    assert res.spec.networks[0].ip == "10.50.0.128"
    static = resolve(_spec("db-1", "h1", ("br", "bridge")), {"br": net}, {}, AddressBook(),
                     {"br": "10.50.0.9"}, NODES)
    assert static.spec.networks[0].ip == "10.50.0.9"
    # The range holds the subnet's broadcast address, which is never handed out.
    assert network_space(net, NODES).capacity() == 127


def test_node_keys_parse_and_implicit_networks_are_never_orphaned_as_gone() -> None:
    listing = Listing(tuple(
        (value, KVMeta(key=key, create_revision=1, mod_revision=4, version=1, lease=0))
        for key, value in (
            (keyspace.ipam_node("bridge", "h1", "172.17.0.2"), b"web-1"),
            (keyspace.ipam("ovl", "10.42.0.2"), b"web-1"),
            (keyspace.ipam_node("gone", "h1", "10.9.0.2"), b"web-1"))), 9)
    allocs = parse_allocations(listing)
    assert [(a.network, a.node, a.ip, a.container) for a in allocs] == [
        ("bridge", "h1", "172.17.0.2", "web-1"), ("ovl", "", "10.42.0.2", "web-1"),
        ("gone", "h1", "10.9.0.2", "web-1")]
    assert [a.key for a in orphans(AddressBook.of(allocs), {"web-1"}, ["ovl"])] == [
        "/berth/ipam/gone/h1/10.9.0.2"]

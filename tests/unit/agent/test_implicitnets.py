"""The implicit networks' gateway CIDRs: defaults around the node's prefixes, refusals."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from agent import implicitnets
from agent.config import parse
from agent.implicitnets import ImplicitNets, choose, parse_gateway, without_own
from berth.errors import UserError
from berth.records import HostPrefix, NodeRecord

BASE = ["--underlay-ip", "10.0.0.1"]


def node(addresses: tuple[str, ...] = (), routes: tuple[str, ...] = ()) -> NodeRecord:
    return NodeRecord(name="h1", address="10.0.0.1", agent_addr="10.0.0.1:7071",
                      addresses=tuple(HostPrefix(cidr=a, device="eth0") for a in addresses),
                      routes=tuple(HostPrefix(cidr=r, device="eth1") for r in routes))


@pytest.mark.parametrize(
    ("addresses", "routes", "expected"),
    [
        pytest.param((), (), ("172.17.0.1/16", "172.18.0.1/16"), id="empty-node"),
        pytest.param(("10.0.0.2/24",), (), ("172.17.0.1/16", "172.18.0.1/16"),
                     id="lan-elsewhere"),
        pytest.param(("172.17.5.9/24",), (), ("172.18.0.1/16", "172.19.0.1/16"),
                     id="address-in-first-candidate"),
        pytest.param((), ("172.18.0.0/16",), ("172.17.0.1/16", "172.19.0.1/16"),
                     id="route-to-second-candidate"),
        pytest.param(("172.17.0.1/16",), ("172.16.0.0/12",),
                     ("192.168.0.1/20", "192.168.16.1/20"), id="all-of-172-routed"),
        pytest.param(("192.168.1.7/24",), ("172.16.0.0/12",),
                     ("192.168.16.1/20", "192.168.32.1/20"), id="home-lan-and-172-routed"),
    ],
)
def test_defaults_avoid_the_node_and_each_other(
    addresses: tuple[str, ...], routes: tuple[str, ...], expected: tuple[str, str],
) -> None:
    chosen = choose(None, None, node(addresses, routes).overlap)
    assert (chosen.bip, chosen.gwbridge) == expected


def test_no_free_candidate_says_which_flag_to_set() -> None:
    everything = node(routes=("172.16.0.0/12", "192.168.0.0/16"))
    with pytest.raises(UserError, match=r"no free subnet for the default network.*--bip"):
        choose(None, None, everything.overlap)


def test_configured_values_are_kept_and_defaults_go_around_them() -> None:
    bip = parse_gateway("172.18.0.1/16", "--bip")
    chosen = choose(bip, None, node().overlap)
    assert chosen == ImplicitNets("172.18.0.1/16", "172.17.0.1/16")
    gw = parse_gateway("172.17.9.1/24", "--gwbridge-bip")
    assert choose(None, gw, node().overlap) == ImplicitNets("172.18.0.1/16", "172.17.9.1/24")


@pytest.mark.parametrize(
    ("bip", "gw", "message"),
    [
        pytest.param("10.0.0.5/16", None,
                     "--bip 10.0.0.5/16: overlaps node h1's address 10.0.0.2/24 on eth0",
                     id="bip-on-the-lan"),
        pytest.param(None, "10.8.1.1/24",
                     "--gwbridge-bip 10.8.1.1/24: overlaps node h1's route to 10.8.0.0/16 "
                     "on eth1", id="gwbridge-on-a-route"),
        pytest.param("172.20.0.1/16", "172.20.128.1/17",
                     "--gwbridge-bip 172.20.128.1/17: overlaps --bip 172.20.0.1/16",
                     id="each-other"),
    ],
)
def test_configured_overlap_is_refused_in_one_line(bip: str | None, gw: str | None,
                                                   message: str) -> None:
    lan = node(("10.0.0.2/24",), ("10.8.0.0/16",))
    with pytest.raises(UserError) as info:
        choose(bip and parse_gateway(bip, "--bip"),
               gw and parse_gateway(gw, "--gwbridge-bip"), lan.overlap)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("172.17.0.1", "expected the bridge's address with a prefix length",
                     id="no-prefix"),
        pytest.param("bridge/16", "not an IPv4 address", id="not-an-address"),
        pytest.param("fd00::1/64", "not an IPv4 address", id="ipv6"),
        pytest.param("172.17.0.0/16", "172.17.0.0 is the subnet's network address; give the "
                     "bridge's own address, e.g. 172.17.0.1/16", id="network-address"),
        pytest.param("172.17.255.255/16", "broadcast address", id="broadcast-address"),
        pytest.param("172.17.0.1/31", "between 8 and 30", id="too-small"),
        pytest.param("10.0.0.1/4", "between 8 and 30", id="too-big"),
    ],
)
def test_bad_gateway_cidr_is_one_line(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        parse_gateway(text, "--bip")
    assert str(info.value).startswith(f"--bip {text!r}: ") and "\n" not in str(info.value)


def test_candidates_are_dockers_pools_in_order() -> None:
    cands = implicitnets.CANDIDATES
    assert cands[0] == ipaddress.IPv4Network("172.17.0.0/16")
    assert cands[14] == ipaddress.IPv4Network("172.31.0.0/16")
    assert cands[15] == ipaddress.IPv4Network("192.168.0.0/20")
    assert cands[-1] == ipaddress.IPv4Network("192.168.240.0/20") and len(cands) == 31


def test_after_a_restart_its_own_bridge_is_not_a_collision(tmp_path: Path) -> None:
    """The bridge driver put 172.17.0.1/16 on a bridge: the next start keeps 172.17."""
    first = choose(None, None, node(("10.0.0.2/24",)).overlap)
    implicitnets.save(tmp_path, first)
    previous = implicitnets.load_previous(tmp_path)
    assert previous == first
    addrs = tuple(HostPrefix(cidr=c, device="x") for c in
                  ("10.0.0.2/24", "172.17.0.1/16", "172.18.0.1/16"))
    routes = tuple(HostPrefix(cidr=c, device="x") for c in ("172.17.0.0/16", "172.18.0.0/16"))
    seen = NodeRecord(name="h1", address="10.0.0.1", agent_addr="a",
                      addresses=without_own(addrs, previous), routes=without_own(routes, previous))
    assert [p.cidr for p in seen.addresses] == ["10.0.0.2/24"] and seen.routes == ()
    assert choose(None, None, seen.overlap) == first


def test_a_foreign_docker0_still_counts(tmp_path: Path) -> None:
    implicitnets.save(tmp_path, ImplicitNets("172.18.0.1/16", "172.19.0.1/16"))
    previous = implicitnets.load_previous(tmp_path)
    docker0 = (HostPrefix(cidr="172.17.0.1/16", device="docker0"),)
    assert without_own(docker0, previous) == docker0


@pytest.mark.parametrize("content", ["", "{", '{"bip": "x", "gwbridge": "y"}', "[]"],
                         ids=["empty", "not-json", "not-cidrs", "not-an-object"])
def test_garbage_state_file_is_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / implicitnets.STATE_FILE).write_text(content)
    assert implicitnets.load_previous(tmp_path) is None


def test_flags_and_daemon_json_keys(tmp_path: Path) -> None:
    cfg = parse([*BASE, "--bip", "172.30.0.1/16"])
    assert cfg.bip is not None and str(cfg.bip.cidr) == "172.30.0.1/16"
    assert cfg.bip.source == "--bip" and cfg.gwbridge_bip is None
    daemon = tmp_path / "daemon.json"
    daemon.write_text(json.dumps({"bip": "10.200.0.1/24", "gwbridge-bip": "10.201.0.1/24"}))
    cfg = parse([*BASE, "--config", str(daemon)])
    assert cfg.bip is not None and cfg.gwbridge_bip is not None
    assert (str(cfg.bip.cidr), str(cfg.gwbridge_bip.cidr)) == ("10.200.0.1/24", "10.201.0.1/24")
    assert cfg.gwbridge_bip.source == f'{daemon}: "gwbridge-bip"'
    assert parse(BASE).bip is None


def test_bip_both_as_flag_and_in_file_is_refused(tmp_path: Path) -> None:
    daemon = tmp_path / "daemon.json"
    daemon.write_text(json.dumps({"bip": "10.200.0.1/24"}))
    with pytest.raises(UserError) as info:
        parse([*BASE, "--config", str(daemon), "--bip", "10.9.0.1/24"])
    assert str(info.value) == (f"{daemon}: the following directives are specified both as a "
                               f'flag and in the configuration file: "bip" (flag --bip '
                               f"10.9.0.1/24)")


def test_bad_bip_in_daemon_json_names_the_file_and_key(tmp_path: Path) -> None:
    daemon = tmp_path / "daemon.json"
    daemon.write_text(json.dumps({"gwbridge-bip": "10.201.0.0/24"}))
    with pytest.raises(UserError, match="network address") as info:
        parse([*BASE, "--config", str(daemon)])
    assert str(info.value).startswith(f"{daemon}: \"gwbridge-bip\" '10.201.0.0/24': ")

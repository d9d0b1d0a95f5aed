"""A macvlan network's options, parsed once, and the names and MTU rule derived from them.

Pure (no kernel): called by macvlan.parent, macvlan.driver and macvlan.host, and by unit
tests. ``parse`` is where every option is checked, so a bad network fails before any
netlink request is made.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from netplugins.contract import NetConf
from netplugins.errors import NetworkConfigError

MODES = ("bridge", "vepa", "private", "passthru")
DEFAULT_MODE = "bridge"
OPTIONS = ("parent", "mode")
MIN_VLAN_ID, MAX_VLAN_ID = 1, 4094   # 0 and 4095 are reserved by 802.1Q
MIN_MTU = 68                         # the least IPv4 allows (RFC 791)
IFNAMSIZ = 16                        # the kernel's limit, terminating NUL included
# IFLA_IFALIAS on a VLAN sub-interface berth created: the only mark that lets teardown
# delete it. A sub-interface without it (an operator's) is never removed.
VLAN_ALIAS = "berth:vlan"
_VLAN_NAME = re.compile(r"(?P<base>.+)\.(?P<vid>[0-9]{1,4})")
_BAD_NAME_CHARS = re.compile(r"[/:\s]")


@dataclass(frozen=True)
class VlanParent:
    """What a dotted parent name asks for when it does not exist: VLAN ``vid`` on ``base``."""

    base: str
    vid: int


@dataclass(frozen=True)
class MacvlanConf:
    network: str
    parent: str
    mode: str
    vlan: VlanParent | None    # None: the name is not ``<base>.<vid>``; never created

    @property
    def passthru(self) -> bool:
        return self.mode == "passthru"


def valid_ifname(name: str) -> bool:
    """The kernel's dev_valid_name: 1-15 bytes, not . or .., no '/', ':' or whitespace."""
    return (
        0 < len(name.encode()) < IFNAMSIZ
        and name not in (".", "..")
        and not _BAD_NAME_CHARS.search(name)
    )


def vlan_of(parent: str) -> VlanParent | None:
    """``eth0.10`` -> VLAN 10 on eth0; None for names that are not base.number."""
    match = _VLAN_NAME.fullmatch(parent)
    if match is None:
        return None
    return VlanParent(match["base"], int(match["vid"]))


def parse(net: NetConf) -> MacvlanConf:
    """Check a macvlan network's options; NetworkConfigError names the first problem."""
    where = f"macvlan network {net.name}"
    unknown = sorted(set(net.options) - set(OPTIONS))
    if unknown:
        raise NetworkConfigError(
            f"{where}: unknown option {unknown[0]!r} (macvlan takes {', '.join(OPTIONS)})"
        )
    parent = net.options.get("parent", "")
    if not parent:
        raise NetworkConfigError(f"{where}: options.parent is required (e.g. eth0 or eth0.10)")
    if not valid_ifname(parent):
        raise NetworkConfigError(
            f"{where}: parent {parent!r} is not an interface name "
            f"(1-{IFNAMSIZ - 1} bytes, no '/', ':' or spaces)"
        )
    mode = net.options.get("mode", DEFAULT_MODE)
    if mode not in MODES:
        raise NetworkConfigError(
            f"{where}: unknown mode {mode!r} (one of {', '.join(MODES)})"
        )
    return MacvlanConf(network=net.name, parent=parent, mode=mode, vlan=vlan_of(parent))


def check_vlan_id(conf: MacvlanConf, vlan: VlanParent) -> None:
    """Only checked when the sub-interface must be created: an existing device of that
    name is used whatever it is, as Docker does."""
    if not MIN_VLAN_ID <= vlan.vid <= MAX_VLAN_ID:
        raise NetworkConfigError(
            f"macvlan network {conf.network}: parent {conf.parent} does not exist, and "
            f"{vlan.vid} is not a VLAN ID to create it with ({MIN_VLAN_ID}-{MAX_VLAN_ID})"
        )


def macvlan_mtu(net: NetConf, parent: str, parent_mtu: int) -> int:
    """The network's MTU if set, else the parent's; never above the parent's (the kernel
    refuses that, and frames that big could not leave through it anyway)."""
    if not net.mtu:
        return parent_mtu
    if not MIN_MTU <= net.mtu <= parent_mtu:
        raise NetworkConfigError(
            f"macvlan network {net.name}: MTU {net.mtu} does not fit parent {parent} "
            f"(MTU {parent_mtu}); use {MIN_MTU}-{parent_mtu}"
        )
    return net.mtu


def anchor_name(network: str) -> str:
    """The host-side reference device a network holds on a sub-interface berth created.

    Stable per network name (names are unique in the cluster), so a restarted agent finds
    it; 15 bytes, like every interface name.
    """
    return "mvr" + hashlib.sha256(network.encode()).hexdigest()[:12]


def anchor_alias(network: str) -> str:
    """What ``ip link`` shows on the reference device, for a person looking at the host."""
    return f"berth:macvlan-ref {network}"

"""The explicit table of network drivers, looked up by the agent by a network's ``driver``.

No registration by import side effects: adding a driver means adding a line here. Each
entry says how to build the per-container Driver and, for drivers with host-wide state per
network, the NetworkHost (None when the driver has none).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from netplugins.bridge.cleanup import remove_stale_networks
from netplugins.bridge.driver import BridgeDriver
from netplugins.bridge.host import BridgeHost
from netplugins.contract import Driver, HostContext, NetConf, NetworkHost
from netplugins.errors import UnknownDriverError
from netplugins.macvlan.cleanup import remove_stale_networks as remove_stale_macvlans
from netplugins.macvlan.driver import MacvlanDriver
from netplugins.macvlan.host import MacvlanHost
from netplugins.overlay.driver import OverlayDriver
from netplugins.overlay.host import OverlayHost

Cleanup = Callable[[HostContext, Iterable[str]], Awaitable[list[str]]]


@dataclass(frozen=True)
class DriverEntry:
    make_driver: Callable[[HostContext], Driver]
    make_host: Callable[[NetConf, HostContext], NetworkHost] | None = None
    # After an agent restart: remove this driver's host state of every network not in
    # the given names (networks deleted while the agent was down); returns what went.
    cleanup: Cleanup | None = None


DRIVERS: Mapping[str, DriverEntry] = {
    "bridge": DriverEntry(make_driver=BridgeDriver, make_host=BridgeHost,
                          cleanup=remove_stale_networks),
    "overlay": DriverEntry(make_driver=OverlayDriver, make_host=OverlayHost),
    "macvlan": DriverEntry(make_driver=MacvlanDriver, make_host=MacvlanHost,
                           cleanup=remove_stale_macvlans),
}


def lookup(name: str, drivers: Mapping[str, DriverEntry] = DRIVERS) -> DriverEntry:
    """The entry for ``name`` in ``drivers`` (tests pass a table of fakes)."""
    try:
        return drivers[name]
    except KeyError:
        known = ", ".join(sorted(drivers))
        raise UnknownDriverError(f"unknown network driver {name!r} (known: {known})") from None

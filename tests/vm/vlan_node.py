"""One macvlan step on the VM it runs on, as the agent would do it: tests/vm/test_vlan.py
runs it over SSH inside the VMs (``python -m tests.vm.vlan_node``), with berth's real driver
on Debian's kernel.

  up   --network N --parent P [--container C --ip A/LEN]
       MacvlanHost.ensure (creates P when it is a missing <base>.<vid>), then, with a
       container, makes netns C and runs ADD and CHECK for it.
  down --network N --parent P [--container C --ip A/LEN]
       with a container, DEL and its netns removed; then MacvlanHost.teardown (removes P
       only if berth made it and nothing else uses it).

The VM's management address (eth0) is the node's underlay address. Errors are printed as
one line and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import subprocess
import sys

from netplugins.contract import Attachment, ContainerId, HostContext, NetConf, mac_from_ip
from netplugins.errors import NetpluginError
from netplugins.macvlan.driver import MacvlanDriver
from netplugins.macvlan.host import MacvlanHost
from netplugins.netlink import discover_underlay


def management_ip() -> str:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", "eth0"], check=True,
                         capture_output=True, text=True).stdout
    return str(json.loads(out)[0]["addr_info"][0]["local"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vlan_node")
    parser.add_argument("verb", choices=("up", "down"))
    parser.add_argument("--network", required=True)
    parser.add_argument("--parent", required=True)
    parser.add_argument("--container")
    parser.add_argument("--ip", type=ipaddress.ip_interface)
    args = parser.parse_args(argv)
    if (args.container is None) != (args.ip is None):
        parser.error("--container and --ip go together")
    return args


async def step(args: argparse.Namespace) -> None:
    ctx = HostContext(await discover_underlay(management_ip()))
    subnet = str(args.ip.network) if args.ip else ""
    net = NetConf(name=args.network, driver="macvlan", subnet=subnet,
                  options={"parent": args.parent})
    host, driver = MacvlanHost(net, ctx), MacvlanDriver(ctx)
    att = None
    if args.container:
        ip = str(args.ip.ip)
        att = Attachment(container_id=ContainerId(args.container),
                         container_name=args.container, netns=f"/run/netns/{args.container}",
                         ip=ip, prefixlen=args.ip.network.prefixlen, mac=mac_from_ip(ip))
    if args.verb == "up":
        await host.ensure()
        if att is not None:
            result = await driver.add(att, net)
            await driver.check(att, net, result)
        return
    if att is not None:
        await driver.delete(att, net, None)
    await host.teardown()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    netns = ["ip", "netns"]
    try:
        if args.verb == "up" and args.container:
            subprocess.run([*netns, "add", args.container], check=True)
            subprocess.run(["ip", "-n", args.container, "link", "set", "lo", "up"], check=True)
        asyncio.run(step(args))
        if args.verb == "down" and args.container:
            subprocess.run([*netns, "del", args.container], check=True)
    except (NetpluginError, subprocess.CalledProcessError) as exc:
        print(f"vlan_node {args.verb} {args.network}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

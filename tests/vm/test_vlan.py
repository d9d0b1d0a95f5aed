"""macvlan on an 802.1q parent (``eth1.10``) for real: berth's driver on Debian's kernel, in
qemu VMs (tests/vm/machine.py), because this machine's kernel has no 8021q module.

What a user sees, asserted (the VLAN part of tests/integration/test_macvlan_driver.py,
test_vlan_parent, runs inside the deployed VM of tests/vm/test_deploy_vm.py):
- across two VMs whose eth1 share one trunk: ``eth1.10`` is created with VLAN id 10 when
  missing, containers on it ping each other across the VMs, the frames on the trunk carry
  the 802.1q tag 10 (tcpdump), an untagged network on the same wire cannot reach them, an
  operator's ``eth1.20`` is used and left alone, and berth's ``eth1.10`` goes only with the
  last network that uses it.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests import needs
from tests.vm.conftest import SOURCE, VENV_PYTHON
from tests.vm.machine import Vm

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]

VM_COUNT = 2
VLAN_NET = "10.231.10"      # the subnet on VLAN 10, and on the untagged trunk (isolation)


def node(vm: Vm, verb: str, network: str, parent: str, container: str = "",
         ip: str = "") -> None:
    """tests/vm/vlan_node.py in ``vm``: the driver's host and CNI steps, as the agent runs them."""
    cmd = (f"cd {SOURCE} && {VENV_PYTHON} -m tests.vm.vlan_node {verb} "
           f"--network {network} --parent {parent}")
    if container:
        cmd += f" --container {container} --ip {ip}/24"
    vm.check(cmd)


def link(vm: Vm, name: str) -> dict[str, Any] | None:
    done = vm.run(f"ip -d -j link show dev {name}")
    if done.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(done.stdout)[0]
    return found


def host_links(vm: Vm) -> set[str]:
    return {entry["ifname"] for entry in json.loads(vm.check("ip -j link show"))}


def ping(vm: Vm, container: str, ip: str) -> bool:
    done = vm.run(f"nsenter --net=/run/netns/{container} /bin/busybox ping -c 2 -W 5 {ip}")
    return done.returncode == 0


def tagged_echo_request(vm: Vm, container: str, src: str, dst: str) -> str:
    """Ping ``dst`` from ``container`` in ``vm`` while tcpdump watches the VM's trunk NIC
    from the switch namespace; returns the frame tcpdump saw (with its link header)."""
    argv = vm.switch.enter("timeout", "120", needs.tool("tcpdump", "tcpdump"), "-i", vm.tap(1),
                           "-e", "-nn", "-l", "-c", "1", f"vlan 10 and icmp and src host {src}")
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as dump:
        assert dump.stderr is not None
        said = ""
        while "listening on" not in said:      # it captures from then on
            line = dump.stderr.readline()
            assert line, f"tcpdump did not start: {said}"
            said += line
        assert ping(vm, container, dst), f"{src} cannot reach {dst} over VLAN 10"
        seen, _ = dump.communicate(timeout=150)
    return seen


def test_vlan_between_vms(vms: list[Vm]) -> None:
    vm1, vm2 = vms
    c1, c2, c3, c4 = (f"{VLAN_NET}.{n}" for n in (1, 2, 3, 4))
    for vm in vms:
        assert link(vm, "eth1.10") is None
    before = {vm.name: host_links(vm) for vm in vms}

    # A network on eth1.10 creates the sub-interface, VLAN 10 on eth1, marked as berth's.
    node(vm1, "up", "tagged", "eth1.10", "c1", c1)
    node(vm2, "up", "tagged", "eth1.10", "c2", c2)
    for vm in vms:
        sub = link(vm, "eth1.10")
        assert sub is not None, f"{vm.name}: no eth1.10"
        assert (sub["link"], sub["ifalias"], sub["linkinfo"]["info_kind"]) == (
            "eth1", "berth:vlan", "vlan")
        assert sub["linkinfo"]["info_data"]["protocol"] == "802.1Q"
        assert sub["linkinfo"]["info_data"]["id"] == 10
        assert "UP" in sub["flags"]

    # Containers in the two VMs meet over VLAN 10, tagged 10 on the wire.
    seen = tagged_echo_request(vm1, "c1", c1, c2)
    assert "ethertype 802.1Q" in seen and "vlan 10," in seen, seen
    assert f"{c1} > {c2}: ICMP echo request" in seen, seen
    assert ping(vm2, "c2", c1)

    # The same subnet untagged on eth1 is another LAN: its containers meet each other,
    # never the VLAN's.
    node(vm1, "up", "flat", "eth1", "c4", c4)
    node(vm2, "up", "flat", "eth1", "c3", c3)
    assert ping(vm1, "c4", c3), "the untagged trunk itself must work"
    assert not ping(vm1, "c1", c3), "VLAN 10 reached an untagged container"
    assert not ping(vm2, "c3", c1), "an untagged container reached VLAN 10"

    # An operator's sub-interface is used as it is and never removed.
    vm1.check("ip link add link eth1 name eth1.20 type vlan id 20 && ip link set eth1.20 up")
    node(vm1, "up", "opnet", "eth1.20", "c5", "10.231.20.5")
    node(vm1, "down", "opnet", "eth1.20", "c5", "10.231.20.5")
    assert link(vm1, "eth1.20") is not None, "berth removed the operator's eth1.20"
    vm1.check("ip link del eth1.20")

    # Two networks share vm1's eth1.10: it stays until the last one is gone.
    node(vm1, "up", "also", "eth1.10")
    node(vm1, "down", "tagged", "eth1.10", "c1", c1)
    assert link(vm1, "eth1.10") is not None, "eth1.10 removed while network also uses it"
    assert ping(vm2, "c3", c4), "the untagged network must not notice"
    node(vm1, "down", "also", "eth1.10")
    assert link(vm1, "eth1.10") is None, "eth1.10 left behind after its last network"
    node(vm2, "down", "tagged", "eth1.10", "c2", c2)
    assert link(vm2, "eth1.10") is None
    for vm, container, ip in ((vm1, "c4", c4), (vm2, "c3", c3)):
        node(vm, "down", "flat", "eth1", container, ip)
    for vm in vms:
        assert host_links(vm) == before[vm.name], f"{vm.name}: host links changed"
        assert vm.check("ip netns list").strip() == ""

"""agent.hostfacts: what the probe's output and /proc say about the host, in words."""

from __future__ import annotations

import asyncio

from agent import hostfacts
from berth.records import DriverSupport

ALL_OK = "veth ok\nbridge ok\nvxlan ok\nmacvlan ok\nvlan ok\n"


def by_name(drivers: tuple[DriverSupport, ...]) -> dict[str, str]:
    return {d.name: d.reason for d in drivers}


def test_a_kernel_with_everything_offers_every_driver() -> None:
    found = by_name(hostfacts.drivers(hostfacts.kernel_reasons(ALL_OK)))
    assert found == {"host": "", "none": "", "container": "", "bridge": "", "overlay": "",
                     "macvlan": "", "macvlan 802.1q": ""}


def test_a_missing_module_reads_as_no_kernel_support() -> None:
    out = ("veth ok\nbridge ok\nvxlan Error: Unknown device type.\nmacvlan ok\n"
           "vlan Error: Unknown device type.\n")
    found = by_name(hostfacts.drivers(hostfacts.kernel_reasons(out)))
    assert found["macvlan 802.1q"] == "no kernel support"
    assert found["overlay"] == "vxlan: no kernel support"
    assert found["macvlan"] == "" and found["bridge"] == ""


def test_other_failures_keep_their_words_and_unprobed_kinds_say_so() -> None:
    found = by_name(hostfacts.drivers(hostfacts.kernel_reasons(
        "veth ok\nbridge RTNETLINK answers: Operation not permitted\n")))
    assert found["bridge"] == "bridge: RTNETLINK answers: Operation not permitted"
    assert found["macvlan"] == "not probed"


def test_cgroup_version_from_mountinfo() -> None:
    v2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
    v1 = ("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
          "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    assert hostfacts.cgroup_version(v2) == "v2"
    assert hostfacts.cgroup_version(v1) == "v1"
    assert hostfacts.cgroup_version("") == "unknown"


def test_a_runtime_that_does_not_run_is_reported_not_raised() -> None:
    facts = asyncio.run(hostfacts.probe("/nonexistent/runtime"))
    assert facts.runtime == "/nonexistent/runtime (version unknown)"
    assert facts.kernel and facts.cgroup in ("v1", "v2")

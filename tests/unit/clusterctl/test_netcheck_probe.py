"""Reading the probe script's output: busybox's own wording for each outcome (captured
from busybox 1.35 in a namespace), and the argv that asks for each probe."""

from __future__ import annotations

import pytest

from clusterctl.netprobe import SCRIPT, Probe, Target, argv, missing, parse

LINES = {
    "dns-answer": (
        "dns\tweb-2\t0\tServer:  127.0.0.11|Address: 127.0.0.11:53||Name: web-2|"
        "Address: 10.42.0.3",
        Probe("dns", "web-2", True, "10.42.0.3", ("10.42.0.3",))),
    "dns-two-answers-server-address-ignored": (
        "dns\tweb\t0\tServer:  127.0.0.11|Address: 127.0.0.11:53||Name: web|"
        "Address: 10.42.0.3|Name: web|Address: 10.42.0.4",
        Probe("dns", "web", True, "10.42.0.3,10.42.0.4", ("10.42.0.3", "10.42.0.4"))),
    "dns-nxdomain": (
        "dns\tnope\t1\tServer:  127.0.0.11|Address: 127.0.0.11:53||"
        "** server can't find nope: NXDOMAIN||** server can't find nope: NXDOMAIN",
        Probe("dns", "nope", False, "NXDOMAIN")),
    "dns-servfail": (
        "dns\tsf\t1\t** server can't find sf: SERVFAIL", Probe("dns", "sf", False, "SERVFAIL")),
    "dns-cut-by-timeout": ("dns\tslow\t143\t", Probe("dns", "slow", False, "no answer within 3 s")),
    "dns-no-resolver": (
        "dns\tx\t1\tnslookup: write to '127.0.0.11': Connection refused|;; connection timed out; "
        "no servers could be reached",
        Probe("dns", "x", False, "no answer from the resolver at 127.0.0.11")),
    "ping-reply": (
        "ping\t10.42.0.3\t0\tPING 10.42.0.3 (10.42.0.3): 56 data bytes|64 bytes from 10.42.0.3",
        Probe("ping", "10.42.0.3", True, "reply")),
    "ping-loss": (
        "ping\t10.7.0.9\t1\tPING 10.7.0.9 (10.7.0.9): 56 data bytes||--- 10.7.0.9 ping "
        "statistics ---|2 packets transmitted, 0 packets received, 100% packet loss",
        Probe("ping", "10.7.0.9", False, "timeout")),
    "ping-unreachable": (
        "ping\t10.9.9.9\t1\tPING 10.9.9.9 (10.9.9.9): 56 data bytes|ping: sendto: Network is "
        "unreachable", Probe("ping", "10.9.9.9", False, "network unreachable")),
    "tcp-held-open-until-timeout": ("tcp\t10.42.0.3:80\t143\t",
                                    Probe("tcp", "10.42.0.3:80", True, "connected")),
    "tcp-peer-closed": ("tcp\t10.42.0.3:80\t0\t", Probe("tcp", "10.42.0.3:80", True, "connected")),
    "tcp-refused": (
        "tcp\t10.42.0.3:81\t1\tnc: can't connect to remote host (10.42.0.3): Connection refused",
        Probe("tcp", "10.42.0.3:81", False, "refused")),
    "tcp-timeout": ("tcp\t10.7.0.9:80\t1\tnc: timed out",
                    Probe("tcp", "10.7.0.9:80", False, "timeout")),
    "tcp-no-host": (
        "tcp\t10.7.0.9:80\t1\tnc: can't connect to remote host (10.7.0.9): No route to host",
        Probe("tcp", "10.7.0.9:80", False, "no route to host")),
    "tool-missing": ("tcp\t10.7.0.9:80\t127\tsh: nc: not found",
                     Probe("tcp", "10.7.0.9:80", False, "sh: nc: not found")),
    "route-ok": ("route\t10.42.0.3\t0\t10.42.0.3 dev eth0  src 10.42.0.2 ",
                 Probe("route", "10.42.0.3", True, "10.42.0.3 dev eth0 src 10.42.0.2")),
    "route-none": ("route\t10.9.9.9\t2\tip: RTNETLINK answers: Network is unreachable",
                   Probe("route", "10.9.9.9", False, "no route")),
}


@pytest.mark.parametrize(("line", "want"), list(LINES.values()), ids=list(LINES))
def test_each_outcome_reads_as_a_user_would_say_it(line: str, want: Probe) -> None:
    assert parse(line) == [want]


def test_noise_and_torn_lines_are_ignored() -> None:
    out = "Terminated\nping\t10.0.0.1\n" + LINES["ping-reply"][0] + "\nwhatever\tx\t0\ty\n"
    assert parse(out) == [LINES["ping-reply"][1]]


def test_argv_asks_for_exactly_the_wanted_probes() -> None:
    args = argv([Target("web-2", "10.42.0.3", tcp_ports=(80, 443)),
                 Target("app-3", "172.20.0.2", icmp=False),
                 Target("b", "172.17.0.3", dns=False)])
    assert args[:5] == ["sh", "-c", SCRIPT, "netcheck", "127.0.0.11"]
    assert args[5:] == ["web-2", "10.42.0.3", "dp", "80,443",
                        "app-3", "172.20.0.2", "d", "",
                        "b", "172.17.0.3", "p", ""]


def test_missing_lists_probes_that_printed_nothing() -> None:
    targets = [Target("web-2", "10.42.0.3", tcp_ports=(80,))]
    got = parse(LINES["dns-answer"][0] + "\n" + LINES["tcp-refused"][0])
    assert missing(targets, got) == ["route 10.42.0.3", "ping 10.42.0.3", "tcp 10.42.0.3:80"]

"""berth's embedded DNS: a resolver at 127.0.0.11 inside every container.

The agent owns one ``Records`` table (fed from its etcd endpoint watch) and one
``DnsServer`` (attached per container once its network is up); the runtime
writes each container's resolv.conf and hosts with ``resolv_conf`` and
``hosts_file``.

Modules: records.py (the name table), answers.py (query -> reply, pure),
server.py (per-container listeners), upstream.py (forwarding misses),
netns.py (creating sockets inside a container's netns), files.py, errors.py.
"""

from __future__ import annotations

from agent.dns.errors import InvalidRecord, NetnsError, ResolverBusy
from agent.dns.files import hosts_file, resolv_conf
from agent.dns.records import DnsEndpoint, EndpointLike, Records
from agent.dns.server import RESOLVER_IP, DnsServer
from agent.dns.upstream import Upstream, host_upstreams, parse_resolv_conf

__all__ = [
    "RESOLVER_IP",
    "DnsEndpoint",
    "DnsServer",
    "EndpointLike",
    "InvalidRecord",
    "NetnsError",
    "Records",
    "ResolverBusy",
    "Upstream",
    "host_upstreams",
    "hosts_file",
    "parse_resolv_conf",
    "resolv_conf",
]

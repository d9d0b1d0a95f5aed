"""The etcd keyspace: every key berth reads or writes is built here.

Writers (one per prefix, so spec and status never race):

    /berth/desired/<kind>/<name>         controller (apply/delete)     manifest spec as JSON
    /berth/nodes/<node>                  agent, attached to its lease  NodeRecord JSON
    /berth/assign/<node>/<container>     controller (scheduler)        ContainerSpec JSON
    /berth/status/<node>/<container>     that node's agent             ContainerStatus JSON
    /berth/ipam/<network>/<ip>           controller (IPAM)             container name
    /berth/ipam/<network>/<node>/<ip>    controller (IPAM), node-local networks (bridge)
    /berth/vni/<vni>                     controller                    network name
    /berth/netstate/<network>            controller                    the network's VNI (decimal)
    /berth/endpoints/<node>/<net>/<ctr>  that node's agent             Endpoint JSON
    /berth/images/<ref>                  controller (image load)       ImageRecord JSON

Everything an agent writes lies in three ranges named by its node alone
(``node_writable``): its node key, its status prefix and its endpoint prefix. etcd
RBAC (berth.etcd.rbac) grants a node's user exactly those, as Kubernetes'
NodeRestriction confines a kubelet to its own objects. Two nodes may hold a key for
the same container while it moves; readers trust only the copy of the node it is
assigned to.

Keys are str here; the etcd client encodes them.
"""

from __future__ import annotations

import re
from typing import NewType

NodeName = NewType("NodeName", str)
ContainerName = NewType("ContainerName", str)
NetworkName = NewType("NetworkName", str)

ROOT = "/berth/"
DESIRED = ROOT + "desired/"
NODES = ROOT + "nodes/"
ASSIGN = ROOT + "assign/"
STATUS = ROOT + "status/"
IPAM = ROOT + "ipam/"
VNI = ROOT + "vni/"
ENDPOINTS = ROOT + "endpoints/"
IMAGES = ROOT + "images/"
# Per-network facts the controller decided (today: the overlay VNI). /berth/vni/<n> is the
# uniqueness index; this key makes "one VNI per network" a create-if-absent guard too.
NETSTATE = ROOT + "netstate/"


# A node name is one path segment of every per-node key and part of an etcd user name
# (node:<name>): a hostname-like label, never "/" (which would reach another node's range).
_NODE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})")


def check_node_name(name: str) -> str:
    """NAME if it can name a node; ValueError saying why otherwise."""
    if not _NODE_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f'node name "{name}" must be 1-63 letters, digits, ".", "_" or "-", '
                         "starting with a letter or digit")
    return name


def _seg(node_name: str) -> str:
    if "/" in node_name or not node_name:
        raise ValueError(f'node name "{node_name}" cannot be part of a key')
    return node_name


def desired(kind: str, name: str) -> str:
    return f"{DESIRED}{kind.lower()}/{name}"


def desired_prefix(kind: str) -> str:
    return f"{DESIRED}{kind.lower()}/"


def node(name: str) -> str:
    return NODES + _seg(name)


def assign_prefix(node_name: str) -> str:
    return f"{ASSIGN}{node_name}/"


def assign(node_name: str, container: str) -> str:
    return f"{ASSIGN}{node_name}/{container}"


def status_prefix(node_name: str) -> str:
    return f"{STATUS}{_seg(node_name)}/"


def status(node_name: str, container: str) -> str:
    return f"{STATUS}{_seg(node_name)}/{container}"


def ipam_prefix(network: str) -> str:
    return f"{IPAM}{network}/"


def ipam(network: str, ip: str) -> str:
    return f"{IPAM}{network}/{ip}"


def ipam_node_prefix(network: str, node_name: str) -> str:
    """Allocations of a node-local network (bridge) on one node: each node reuses the subnet."""
    return f"{IPAM}{network}/{node_name}/"


def ipam_node(network: str, node_name: str, ip: str) -> str:
    return f"{IPAM}{network}/{node_name}/{ip}"


def vni(number: int) -> str:
    return f"{VNI}{number}"


def endpoints_prefix(node_name: str) -> str:
    return f"{ENDPOINTS}{_seg(node_name)}/"


def endpoint(node_name: str, network: str, container: str) -> str:
    return f"{ENDPOINTS}{_seg(node_name)}/{network}/{container}"


def node_writable(node_name: str) -> tuple[str, str, str]:
    """The node key and the two prefixes that hold everything NODE_NAME's agent writes."""
    return node(node_name), status_prefix(node_name), endpoints_prefix(node_name)


def parse_status(key: str) -> tuple[str, str] | None:
    """(node, container) of a status key; None for a key of another shape."""
    parts = key.removeprefix(STATUS).split("/") if key.startswith(STATUS) else []
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def parse_endpoint(key: str) -> tuple[str, str, str] | None:
    """(node, network, container) of an endpoint key; None for a key of another shape."""
    parts = key.removeprefix(ENDPOINTS).split("/") if key.startswith(ENDPOINTS) else []
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


def parse_assign(key: str) -> tuple[str, str] | None:
    """(node, container) of an assignment key; None for a key of another shape."""
    parts = key.removeprefix(ASSIGN).split("/") if key.startswith(ASSIGN) else []
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def image(ref: str) -> str:
    return IMAGES + ref


def netstate(network: str) -> str:
    return NETSTATE + network


def last_segment(key: str) -> str:
    """The final path element of a key: the object's name."""
    return key.rsplit("/", 1)[-1]

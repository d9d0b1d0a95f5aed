"""The etcd keyspace: every key berth reads or writes is built here.

Writers (one per prefix, so spec and status never race):

    /berth/desired/<kind>/<name>         controller (apply/delete)     manifest spec as JSON
    /berth/nodes/<node>                  agent, attached to its lease  NodeRecord JSON
    /berth/assign/<node>/<container>     controller (scheduler)        ContainerSpec JSON
    /berth/status/<container>            agent running it              ContainerStatus JSON
    /berth/ipam/<network>/<ip>           controller (IPAM)             container name
    /berth/ipam/<network>/<node>/<ip>    controller (IPAM), node-local networks (bridge)
    /berth/vni/<vni>                     controller                    network name
    /berth/netstate/<network>            controller                    the network's VNI (decimal)
    /berth/endpoints/<network>/<ctr>     agent running it              Endpoint JSON
    /berth/images/<ref>                  controller (image load)       ImageRecord JSON

Keys are str here; the etcd client encodes them.
"""

from __future__ import annotations

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


def desired(kind: str, name: str) -> str:
    return f"{DESIRED}{kind.lower()}/{name}"


def desired_prefix(kind: str) -> str:
    return f"{DESIRED}{kind.lower()}/"


def node(name: str) -> str:
    return NODES + name


def assign_prefix(node_name: str) -> str:
    return f"{ASSIGN}{node_name}/"


def assign(node_name: str, container: str) -> str:
    return f"{ASSIGN}{node_name}/{container}"


def status(container: str) -> str:
    return STATUS + container


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


def endpoints_prefix(network: str) -> str:
    return f"{ENDPOINTS}{network}/"


def endpoint(network: str, container: str) -> str:
    return f"{ENDPOINTS}{network}/{container}"


def image(ref: str) -> str:
    return IMAGES + ref


def netstate(network: str) -> str:
    return NETSTATE + network


def last_segment(key: str) -> str:
    """The final path element of a key: the object's name."""
    return key.rsplit("/", 1)[-1]

"""The node's packet filter for every driver: berth's own nftables tables, per-owner chains.

Layout: rules.py (the model, rendering an nft transaction, reading nft's JSON back; pure),
nodeports.py (the node's own ports, closed to containers on the input hook),
firewall.py (``Firewall``: one per HostContext, the only writer), docker.py (accepts in
iptables' FORWARD when Docker made its policy DROP), command.py (running the tools in the
host netns). Drivers build ``Ruleset`` values and call ``Firewall.apply/check/remove``.

Design notes
------------
Why nftables. Every change is one ``nft -f -`` transaction: the kernel switches from the
old rule set to the new one at once (a generation swap), so re-applying an owner flushes
and refills its chains with no moment where its rules are missing, and a failed
transaction changes nothing. berth owns whole tables (``table ip berth``, ``table inet
berth`` and ``table bridge berth``), so it never needs to parse, flush or rewrite rules
others wrote; with iptables(-restore) it would share the ``nat`` and ``filter`` tables with Docker,
kube-proxy and the host's own rules, and iptables-legacy and iptables-nft on one host keep
two rule sets that do not see each other. nft also gives ``fib daddr type local`` for
"any address of this host" and a bridge family for L2 rules, without extra modules.

Owners and chains. An owner is one thing that wants rules: a network on this host (the
bridge name, e.g. ``berth0``, ``bb-0a1b2c3d4e``) or one container's attachment
(``c-<hash>``). Each owner has at most one chain per base chain, ``<owner>.<base>``; base
chains (``raw-pre``, ``nat-pre``, ``nat-out``, ``nat-post``, ``filter-fwd``, the bridge
table's ``filter-fwd`` and the inet table's ``filter-in``) hold only jumps, one per owner
chain, sorted. Applying an owner is one transaction: add its chains, flush them, add its
rules, rebuild the base chains it touches from the owner chains that will exist, delete
chains it no longer wants. Hence
re-applying is idempotent, nothing is duplicated, and a new Firewall object after an agent
restart that re-applies the same owners leaves ``nft list table`` byte-identical: rules
have no counters, and each carries a comment hashing its own text, which is also how CHECK
recognises them whatever nft prints back. Owner chains only drop or return (NAT chains
translate), never accept, so the order of owners on a base chain does not matter. The
tables are deleted when their last owner goes.

Stale owners. A container whose DEL never came (the agent died while it exited) leaves
its attachment's chains behind. Their liveness fact is in the kernel: each container
owner is named after its host veth, and the kernel deletes a veth when the container's
netns dies. ``Firewall.prune(prefix, alive)`` removes every owner whose ``alive`` answer
is no, checking under the firewall's lock so an ADD that has made its veth and is about to
apply cannot lose its rules; the bridge host runs it on every ensure and resync. A
network's owner is removed by NetworkHost.teardown, which the agent calls when the
network leaves the node.

Node ports closed to containers: the owner ``node-ports`` (nodeports.py) drops TCP to
berth's and etcd's ports, and UDP to the VXLAN port, arriving on any container-facing
interface, on the input hook of ``table inet berth``, and the same to the other hosts of
the cluster on the forward hook of ``table ip berth``. The agent applies it at start and
keeps it; it outlives the agent (containers keep running without one), and goes only with
``Firewall.remove("node-ports")``. Docker has no such rule: a container on docker0 reaches
whatever listens on its host's addresses (moby/libnetwork#1151 tells users to add
``iptables -A INPUT -i br-+ -j DROP`` themselves).

Living next to Docker: see docker.py.
"""

from netplugins.firewall.firewall import Firewall
from netplugins.firewall.nodeports import NodePorts
from netplugins.firewall.rules import Base, Chain, Ruleset

__all__ = ["Base", "Chain", "Firewall", "NodePorts", "Ruleset"]

"""Network drivers behind one CNI-like contract (netplugins.contract), used by the agent.

Layout: contract.py (types and Protocols), errors.py, registry.py (name -> driver),
netlink.py (shared pyroute2 helpers), firewall/ (the node's nftables tables, shared by
drivers through HostContext.firewall), and one folder per driver (overlay/, bridge/, macvlan/).
Drivers import only netplugins and berth; they never see the agent, the controller or the
etcd client.
"""

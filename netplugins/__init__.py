"""Network drivers behind one CNI-like contract (netplugins.contract), used by the agent.

Layout: contract.py (types and Protocols), errors.py, registry.py (name -> driver),
netlink.py (shared pyroute2 helpers), and one folder per driver (overlay/, macvlan/). Drivers import
only netplugins and berth; they never see the agent, the controller or the etcd client.
"""

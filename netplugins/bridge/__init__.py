"""The bridge driver: driver.py (CNI verbs per container), host.py (per-network host state
and its resync; its docstring holds the design notes), devices.py (the bridge and its
ports), config.py (validated settings and derived names), rules.py (the network's and the
published ports' firewall rules, handed to netplugins.firewall)."""

"""The VXLAN overlay driver: driver.py (CNI verbs per container), host.py (per-network host
state and its resync loop; its docstring holds the design notes), devices.py (bridge and
VXLAN device), fdb.py (peer ARP/FDB entries and their diff)."""

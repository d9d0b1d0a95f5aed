"""The macvlan driver: driver.py (CNI verbs per container), host.py (per-network host state;
its docstring holds the design notes), parent.py (the parent, the 802.1q sub-interface berth
may create and the references that keep it), config.py (options, names, MTU rule)."""

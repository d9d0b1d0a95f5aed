"""The lab: N simulated hosts on this machine, each a network namespace with its own agent.

clusterctl/main.py calls ``up``, ``down`` and ``status``; tests also use
``leftovers``. Module map: ``state`` (paths, lab.json, LabInfo), ``topology`` (netns,
bridge, veths, subnet), ``process`` (spawn/stop by PID), ``daemons`` (etcd, controller,
agents, image, readiness), ``cleanup`` (containers, mounts, cgroups, leftovers),
``lab`` (the verbs).
"""

from __future__ import annotations

from clusterctl.lab.cleanup import leftovers
from clusterctl.lab.errors import LabError, LabNameError
from clusterctl.lab.lab import down, status, up
from clusterctl.lab.state import HostInfo, LabInfo, OutsideInfo

__all__ = [
    "HostInfo",
    "LabError",
    "LabInfo",
    "LabNameError",
    "OutsideInfo",
    "down",
    "leftovers",
    "status",
    "up",
]

"""A container's network mode as the runtime carries it out: which netns, which hostname.

containers.Runtime calls ``parse_network_mode`` on every create and hands the bundle
builder a ``Sandbox``. The runtime knows nothing of networks (import-linter forbids it):
the mode comes in with the spec (``ContainerSpec.network_mode``), and a ``container:``
target is one of the runtime's own containers, looked up in its own state dir.

- ``""`` and ``"none"``: a new network namespace (runc brings ``lo`` up in it); the
  agent's network hooks add interfaces for ``""`` and nothing for ``none``.
- ``"host"``: no network namespace in the OCI config, so the container shares the netns
  runc runs in, the agent's (the node's). It keeps its own UTS namespace, whose hostname
  is the node's name, as Docker does with ``--network host``.
- ``"container:<name>"``: the OCI network namespace ``path`` of the target's running
  init, ``/proc/<pid>/ns/net``. As in Docker, hostname, /etc/hosts and /etc/resolv.conf
  are the target's. The target's init (pid and start time) is recorded as ``JoinedNetns``:
  when the target gets a new init, the joiner sits in a dead netns and must be recreated
  (agent.plan compares them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.runtime.errors import SpecError
from berth.records import ContainerSpec

CONTAINER_PREFIX = "container:"
_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

Kind = Literal["default", "none", "host", "container"]


@dataclass(frozen=True)
class NetworkMode:
    kind: Kind
    target: str = ""           # the container whose netns a "container" mode joins


@dataclass(frozen=True, order=True)
class InitId:
    """One run of a container's init: a pid with its start time, so reuse never matches."""

    pid: int
    start: int


@dataclass(frozen=True)
class JoinedNetns:
    """The container a joiner took its netns from, and that container's init at the time."""

    container: str
    init: InitId


@dataclass(frozen=True)
class Sandbox:
    """What the OCI config needs to know about the container's network namespace."""

    netns: Literal["new", "host", "path"]
    hostname: str
    netns_path: str = ""       # "path": /proc/<pid>/ns/net of the target's init


def parse_network_mode(spec: ContainerSpec) -> NetworkMode:
    """The spec's network_mode, refused (SpecError) when it cannot be carried out."""
    text = spec.network_mode
    if text == "":
        return NetworkMode("default")
    if text in ("none", "host"):
        mode = NetworkMode("none" if text == "none" else "host")
    elif text.startswith(CONTAINER_PREFIX):
        target = text[len(CONTAINER_PREFIX):]
        if not _TARGET.match(target):
            raise SpecError(f"{spec.name}: network_mode {text!r}: not a container name")
        if target == spec.name:
            raise SpecError(f"{spec.name}: network_mode {text!r}: a container cannot join "
                            f"its own network namespace")
        mode = NetworkMode("container", target)
    else:
        raise SpecError(f"{spec.name}: network_mode {text!r}: expected none, host or "
                        f"container:<name>")
    # The controller refuses these at apply (moby's validateNetContainerMode); an
    # assignment that still has them was not written by it.
    for field, value in (("networks", spec.networks), ("ports", spec.ports)):
        if value:
            raise SpecError(f"{spec.name}: network_mode {text}: {field} cannot be used with it")
    return mode

"""``clusterctl lab up|down|status``: the embedded default cluster on this machine.

Public API for clusterctl/main.py: ``up``, ``down``, ``status`` and ``leftovers``.
``up`` is convergent: on an existing lab it brings back whatever is missing (a killed
agent is restarted with its recorded argv); a failed first ``up`` removes what it
built. ``up`` adds a clusterctl context named after the lab (its controller, CA and
admin certificate), selected only when none is; ``down`` removes it. ``down`` is
idempotent and ends by checking ``leftovers``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from pathlib import Path

from berth.busybox import build_busybox_image
from clusterctl import contexts
from clusterctl.lab import cleanup, daemons, process, topology
from clusterctl.lab.errors import LabError
from clusterctl.lab.state import (
    CONTROLLER_PORT,
    LabInfo,
    LabState,
    all_states,
    info_of,
    lab_dir,
    labs_lock,
    load,
    run_dir,
    save,
    validate,
)

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


async def up(
    name: str,
    hosts: int = 3,
    *,
    progress: Progress = _quiet,
    within: float = 180.0,
    _daemons: bool = True,
) -> LabInfo:
    """Build or complete lab ``name`` and return once every node is Ready.

    Raises LabError when that takes longer than ``within`` seconds (naming the logs).

    ``_daemons=False`` (tests of this package only) stops after etcd: no controller,
    agents, image or readiness wait.
    """
    validate(name, hosts)
    # Root-netns networks are read outside the lock: only lab state files can race.
    used = await topology.used_networks()
    state, fresh = await asyncio.to_thread(_claim, name, hosts, used)
    progress(f"lab {name}: subnet {state.subnet}" + ("" if fresh else " (existing lab)"))
    try:
        await _converge(state, progress, within, _daemons)
    except BaseException:
        if fresh:
            progress(f"lab {name}: start-up failed, removing what was built")
            await asyncio.shield(down(name, progress=progress))
        raise
    info = info_of(state)
    if add_context(info):
        progress(f"selected context {name}")
    progress(f"lab {name} is up: controller at {state.ctl_ip}:{CONTROLLER_PORT}")
    return info


def add_context(info: LabInfo) -> bool:
    """Add (or refresh) context ``info.name``; True when it became the current one."""
    tls = info.tls("admin")
    entry = contexts.ContextEntry(name=info.name, server=info.controller, ca=tls.ca,
                                  cert=tls.cert, key=tls.key)
    return contexts.add(entry, select_if_none=True)


def _claim(
    name: str, hosts: int, used: list[ipaddress.IPv4Network]
) -> tuple[LabState, bool]:
    """Load the lab, or allocate its subnet and write its state file under the labs lock."""
    with labs_lock():
        state = load(name)
        if state is not None:
            if state.hosts != hosts:
                raise LabError(
                    f"lab {name} exists with {state.hosts} hosts; "
                    f"run 'clusterctl lab down --name {name}' first to change it to {hosts}"
                )
            return state, False
        subnet = topology.choose_subnet([s.subnet for s in all_states()], used)
        state = LabState(name=name, subnet=subnet, hosts=hosts)
        save(state)
        return state, True


async def _converge(
    state: LabState, progress: Progress, within: float, with_daemons: bool
) -> None:
    deadline = asyncio.get_running_loop().time() + within

    def left() -> float:
        return max(1.0, deadline - asyncio.get_running_loop().time())

    progress(f"creating network namespaces and the underlay bridge for {state.hosts} hosts")
    await topology.ensure_topology(state)
    _make_dirs(state)
    await asyncio.to_thread(daemons.ensure_pki, state)
    if daemons.ensure_process(state, "etcd", "ctl", daemons.etcd_argv(state)):
        progress("started etcd")
    await daemons.wait_etcd(state, min(left(), 30.0))
    if await daemons.ensure_rbac(state):
        progress(f"etcd RBAC on: users admin, controller and node:<host> for {state.hosts} hosts")
    if not with_daemons:
        return
    if daemons.ensure_process(state, "controller", "ctl", daemons.controller_argv(state)):
        progress("started the controller")
    await daemons.wait_controller(state, min(left(), 30.0))
    for i, host in enumerate(state.host_names(), start=1):
        if daemons.ensure_process(state, f"agent-{host}", host, daemons.agent_argv(state, i)):
            progress(f"started the agent of {host}")
    if not state.image_loaded:
        tar = lab_dir(state.name) / "images" / "busybox.tar"
        progress("building the busybox image")
        refs = await daemons.load_image(state, await _build_busybox(tar))
        progress(f"loaded image {', '.join(refs)}")
        state.image_loaded = True
        save(state)
    progress(f"waiting for {state.hosts} nodes to be Ready")
    await daemons.wait_nodes(state, left(), progress)


def _make_dirs(state: LabState) -> None:
    for sub in ("logs", "controller", "images"):
        (lab_dir(state.name) / sub).mkdir(parents=True, exist_ok=True)
    for host in state.host_names():
        (lab_dir(state.name) / "hosts" / host).mkdir(parents=True, exist_ok=True)
        (run_dir(state.name) / host).mkdir(parents=True, exist_ok=True)


async def _build_busybox(tar: Path) -> Path:
    try:
        return await asyncio.to_thread(build_busybox_image, tar, "busybox:latest")
    except OSError as exc:
        raise LabError(f"building the busybox image at {tar} failed: {exc}") from exc


async def down(name: str, *, progress: Progress = _quiet) -> None:
    """Remove every process, container, mount, cgroup, netns, link and dir of lab ``name``."""
    validate(name)
    if not cleanup.leftovers(name):
        progress(f"lab {name} does not exist; nothing to do")
        contexts.remove(name)
        return
    state = cleanup.load_quietly(name)
    if state is not None:
        # Agents first so they stop reconciling, etcd last so they can deregister.
        for rank in range(3):
            group = {r: p for r, p in state.processes.items() if _stop_rank(r) == rank}
            if group:
                progress(f"stopping {', '.join(group)}")
                await process.stop({p.pid: p.argv for p in group.values()})
    progress("removing containers, mounts and cgroups")
    await cleanup.delete_containers(name)
    await process.kill_all(cleanup.conmon_pids(name))
    await process.kill_all(cleanup.lab_processes(name))
    cleanup.unmount_all(name)
    await cleanup.remove_cgroups(name)
    progress("removing network namespaces and the root link")
    await topology.delete_topology(name)
    cleanup.remove_dirs(name)
    contexts.remove(name)
    remaining = await _settle(name)
    if remaining:
        raise LabError(f"lab {name} was not removed completely: " + "; ".join(remaining))
    progress(f"lab {name} removed")


def _stop_rank(role: str) -> int:
    return 0 if role.startswith("agent-") else 1 if role == "controller" else 2


async def _settle(name: str) -> list[str]:
    """Leftovers, allowing the kernel a moment to finish releasing namespaces."""
    for _ in range(30):
        remaining = cleanup.leftovers(name)
        if not remaining:
            return []
        await asyncio.sleep(0.1)
    return remaining


def status(name: str | None = None) -> list[LabInfo]:
    """Labs known from their state files, with whether each recorded process still runs."""
    if name is not None:
        validate(name)
        state = load(name)
        return [info_of(state)] if state else []
    return [info_of(state) for state in all_states()]

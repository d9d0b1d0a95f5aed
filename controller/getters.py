"""Get: the cluster as clusterctl lists it, from one ClusterState snapshot.

Called by server.py. Pure functions of the snapshot: nodes (Ready while their
lease-bound record exists; NotReady when only assignments still name them),
services (desired + running replicas), containers (assignments joined with the
agents' status; unplaced replicas appear as "pending" with the scheduler's
reason, or the IPAM's when no address is left; with their published ports and network
mode) and networks (desired + VNI + endpoint count, plus the node-local default network
``bridge``, which is not stored: one row per subnet the Ready nodes report for it, naming
those nodes). A record that cannot be processed (ClusterState.invalid) is listed
too, as Invalid with the reason in ``invalid``, so a poison pill is visible and the
rest of the listing is unaffected.

Containers carry ``generation`` (what the controller is rolling out) and
``observed_generation`` (what the assigned node's agent last reported), so
``apply --wait`` can tell a finished rollout from an old container still running.
A changed service whose assignment is not rewritten yet already reports the next
generation; one the scheduler cannot rewrite (no address) says why in ``error``.
"""

from __future__ import annotations

from collections.abc import Callable

from berth import keyspace, kinds
from berth.errors import NotFoundError, UserError
from berth.limits import DEFAULT_LIMITS, Limits
from berth.manifest import DEFAULT_NETWORK
from berth.records import ContainerSpec, ContainerStatus
from controller.ipam import AddressBook, AddressError, resolve, static_ips
from controller.placement import plan
from controller.state import ClusterState
from protos import controller_pb2


def get(
    state: ClusterState, kind: str, name: str = "", limits: Limits = DEFAULT_LIMITS
) -> controller_pb2.GetResponse:
    canonical = kinds.resource(kind)
    if canonical is None:
        raise UserError(f'unknown kind "{kind}" (expected nodes, services, containers '
                        "or networks)")
    response = controller_pb2.GetResponse()
    builders: dict[str, Callable[[ClusterState], list[object]]] = {
        "nodes": _nodes, "services": _services,
        "containers": lambda s: _containers(s, limits), "networks": _networks,
    }
    items = builders[canonical](state)
    if name:
        items = [i for i in items if getattr(i, "name", None) == name]
        if not items:
            raise NotFoundError(f'{canonical[:-1]} "{name}" not found')
    getattr(response, canonical).extend(items)
    return response


def _nodes(state: ClusterState) -> list[object]:
    out: list[object] = []
    names = set(state.nodes) | {a.node for a in state.assignments}
    for name in sorted(names):
        record = state.nodes.get(name)
        out.append(controller_pb2.Node(
            name=name, status="Ready" if record else "NotReady",
            address=record.address if record else "",
            agent_addr=record.agent_addr if record else "",
            containers=state.containers_on(name),
            labels=dict(record.labels) if record else {}))
    for bad in state.invalid_of("Node"):
        out.append(controller_pb2.Node(name=bad.name, status="Invalid", invalid=bad.reason))
    return out


def _running(state: ClusterState, service: str) -> int:
    return sum(1 for a in state.assignments
               if a.spec.service == service and _state_of(state.statuses.get(a.spec.name))
               == "running")


def _state_of(status: ContainerStatus | None) -> str:
    return status.state if status else "pending"


def _services(state: ClusterState) -> list[object]:
    out: list[controller_pb2.Service] = [controller_pb2.Service(
        name=name, image=svc.doc.spec.image, replicas=svc.doc.spec.replicas,
        running=_running(state, name), spec_json=svc.doc.to_json().decode())
        for name, svc in state.services.items()]
    out += [controller_pb2.Service(name=bad.name, invalid=bad.reason)
            for bad in state.invalid_of("Service")]
    out.sort(key=lambda s: s.name)
    return list(out)


def _containers(state: ClusterState, limits: Limits) -> list[object]:
    out: list[controller_pb2.Container] = []
    pending, rollout = _unplaced(state, limits)
    bad_status = {b.name: b.reason for b in state.invalid_of("Container")
                  if b.key.startswith(keyspace.STATUS)}
    for assignment in state.assignments:
        spec = assignment.spec
        status = state.statuses.get(spec.name)
        target, problem = rollout.get(spec.name, (spec.generation, ""))
        ctr = controller_pb2.Container(
            name=spec.name, service=spec.service, node=assignment.node, image=spec.image,
            state=_state_of(status), generation=target)
        if status is not None:
            ctr.pid = status.pid
            ctr.started_at = status.started_at
            ctr.finished_at = status.finished_at
            ctr.error = status.error
            if status.exit_code is not None:
                ctr.exit_code = status.exit_code
            for network, ip in status.networks.items():
                ctr.networks[network].ip = ip
            # Another node's status (a container that moved) says nothing about this one.
            if status.node == assignment.node:
                ctr.observed_generation = status.generation
        if problem:
            ctr.error = "; ".join(e for e in (problem, ctr.error) if e)
        _mark_invalid(ctr, status, bad_status.pop(spec.name, ""))
        for att in spec.networks:
            if att.ip:
                ctr.networks[att.network].ip = att.ip
            ctr.networks[att.network].mac = att.mac
        _ports(ctr, spec)
        out.append(ctr)
    out += _invalid_containers(state, bad_status)
    out += _removing(state, {c.name for c in out} | set(pending))
    for name, reason in pending.items():
        service = name.rsplit("-", 1)[0]
        image = state.services[service].doc.spec.image if service in state.services else ""
        out.append(controller_pb2.Container(name=name, service=service, state="pending",
                                            error=reason, image=image))
    return [*sorted(out, key=lambda c: (c.service, _replica_index(c.name), c.name))]


def _ports(ctr: controller_pb2.Container, spec: ContainerSpec) -> None:
    ctr.network_mode = spec.network_mode
    for port in spec.ports:
        ctr.ports.add(host_ip=port.host_ip or "0.0.0.0", host_port=port.host_port,
                      container_port=port.container_port, protocol=port.protocol)


def _removing(state: ClusterState, listed: set[str]) -> list[controller_pb2.Container]:
    """Containers no longer assigned whose agent has not finished removing them.

    The agent deletes a container's status only once the process, mounts and cgroup
    are gone, so until then it is shown as "removing" (Kubernetes' Terminating).
    """
    return [
        controller_pb2.Container(
            name=name, service=name.rsplit("-", 1)[0], node=status.node, state="removing",
            pid=status.pid, started_at=status.started_at, error=status.error,
        )
        for name, status in sorted(state.statuses.items()) if name not in listed
    ]


def _mark_invalid(ctr: controller_pb2.Container, status: ContainerStatus | None,
                  bad_status: str) -> None:
    """An agent that cannot process the assignment says so in its status (state invalid)."""
    reason = bad_status or (status.error if status and status.state == "invalid" else "")
    if reason:
        ctr.state = "invalid"
        ctr.invalid = ctr.error = reason


def _invalid_containers(state: ClusterState, bad_status: dict[str, str]
                        ) -> list[controller_pb2.Container]:
    """Assignments that do not parse, and unparseable statuses of unassigned containers."""
    rows = [controller_pb2.Container(name=b.name, node=b.node, state="invalid",
                                     error=b.reason, invalid=b.reason)
            for b in state.invalid_of("Container") if b.key.startswith(keyspace.ASSIGN)]
    listed = {r.name for r in rows}
    rows += [controller_pb2.Container(name=name, state="invalid", error=reason, invalid=reason)
             for name, reason in sorted(bad_status.items()) if name not in listed]
    return rows


def _unplaced(
    state: ClusterState, limits: Limits
) -> tuple[dict[str, str], dict[str, tuple[int, str]]]:
    """What the scheduler has yet to write, as its next pass will decide it.

    Returns the unplaced replicas and why (no node, or no address), and for assigned
    containers whose spec is about to change: the generation being rolled out and,
    when the update cannot get an address, why it is stuck (the old spec keeps running).
    """
    decided = plan(state.services, state.networks, state.nodes, state.assignments, limits,
                   state.statuses)
    book = AddressBook.of(state.allocations)
    vnis = state.vnis.assignments()
    pending = dict(decided.pending)
    # Same order as the scheduler's writes: creates, then updates.
    for create in decided.creates:
        statics = static_ips(state.services[create.spec.service].doc)
        try:
            book.record(resolve(create.spec, state.networks, vnis, book, statics,
                                state.nodes), 0)
        except AddressError as exc:
            pending[create.spec.name] = str(exc)
    rollout: dict[str, tuple[int, str]] = {}
    for name, reason in decided.stuck.items():
        current = state.assignment(name)
        generation = current.spec.generation + 1 if current else 0
        rollout[name] = (generation, f"cannot roll out generation {generation}: {reason}")
    for update in decided.updates:
        spec = update.spec
        statics = static_ips(state.services[spec.service].doc)
        try:
            book.record(resolve(spec, state.networks, vnis, book, statics, state.nodes), 0)
        except AddressError as exc:
            rollout[spec.name] = (spec.generation,
                                  f"cannot roll out generation {spec.generation}: {exc}")
        else:
            rollout[spec.name] = (spec.generation, "")
    return pending, rollout


def _replica_index(name: str) -> int:
    suffix = name.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def _networks(state: ClusterState) -> list[object]:
    out: list[controller_pb2.Network] = [controller_pb2.Network(
        name=name, driver=net.spec.driver, subnet=net.spec.subnet,
        gateway=net.spec.gateway or "", endpoints=state.endpoints[name],
        vni=state.vnis.of(name), internal=net.spec.internal, options=net.spec.options,
        mtu=net.spec.mtu or 0, ip_range=net.spec.ip_range or "")
        for name, net in state.networks.items()]
    out += _default_networks(state)
    out += [controller_pb2.Network(name=bad.name, invalid=bad.reason)
            for bad in state.invalid_of("Network")]
    out.sort(key=lambda n: (n.name, list(n.nodes)))
    return list(out)


def _default_networks(state: ClusterState) -> list[controller_pb2.Network]:
    """``bridge`` as the Ready nodes report it: one row per (subnet, gateway)."""
    by_subnet: dict[tuple[str, str], list[str]] = {}
    for name, record in sorted(state.nodes.items()):
        iface = record.implicit_network(DEFAULT_NETWORK)
        if iface is not None:
            by_subnet.setdefault((str(iface.network), str(iface.ip)), []).append(name)
    rows = []
    for (subnet, gateway), nodes in sorted(by_subnet.items()):
        members = set(nodes)
        attached = sum(1 for a in state.assignments if a.node in members
                       and any(n.network == DEFAULT_NETWORK for n in a.spec.networks))
        rows.append(controller_pb2.Network(
            name=DEFAULT_NETWORK, driver="bridge", subnet=subnet, gateway=gateway,
            endpoints=attached, nodes=nodes, options={"icc": "true"}))
    return rows

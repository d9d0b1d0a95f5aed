"""Exec and Logs proxied to the agent that runs the container.

Called by server.py. The container's assignment names its node; the node's
record (present only while the agent holds its lease) names the agent's gRPC
address. Frames are passed through unchanged in both directions' order; an
agent error keeps its status code so clusterctl sees what the agent said.
Frames are relayed one at a time: the next is read from the agent only after
grpc.aio has taken the previous one under the client's flow control, so a slow
client holds back the agent (and the agent its command) instead of filling
the controller's memory.

With mTLS (``AgentDialer`` holding the controller's identity) the controller pins the
agent's certificate name to ``node-<name>`` of the node record it dials: an agent can
only answer as the node its certificate names, whatever address a record advertises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from pydantic import ValidationError

from berth import grpcopts, keyspace, tls
from berth.errors import NotFoundError, PermanentError
from berth.etcd import KeyValue
from berth.records import ContainerSpec, NodeRecord, load_error
from controller.errors import AgentRejected, NodeUnavailable
from protos import agent_pb2_grpc, common_pb2

T = TypeVar("T")


def agent_stub(channel: grpc.aio.Channel) -> agent_pb2_grpc.AgentAsyncStub:
    """The generated Agent stub for ``channel`` (typed by mypy-protobuf)."""
    return agent_pb2_grpc.AgentStub(channel)


@dataclass(frozen=True)
class AgentDialer:
    """The one way the controller dials an agent: its advertised address, bounded messages,
    and with ``tls`` the controller's certificate and the node's pinned name."""

    tls: tls.TlsSettings | None = None

    def channel(self, node: NodeRecord) -> grpc.aio.Channel:
        pinned = f"node-{node.name}" if self.tls is not None else None
        return tls.channel(node.agent_addr, self.tls, grpcopts.channel_options(), pinned)


PLAINTEXT = AgentDialer()


async def locate(etcd: KeyValue, container: str) -> tuple[ContainerSpec, NodeRecord]:
    """The container's assignment and its node; NOT_FOUND / UNAVAILABLE otherwise."""
    listing = await etcd.get_prefix(keyspace.ASSIGN)
    for value, meta in listing.items:
        if keyspace.last_segment(meta.key) == container:
            try:
                spec = ContainerSpec.loads(value)
            except ValidationError as exc:
                raise PermanentError(f'container "{container}": its assignment is invalid: '
                                     f"{load_error(exc)}") from exc
            break
    else:
        raise NotFoundError(f'container "{container}" not found (not assigned to any node)')
    raw, _ = await etcd.get(keyspace.node(spec.node))
    if raw is None:
        raise NodeUnavailable(f'container "{container}": node "{spec.node}" is not Ready '
                              "(its agent is down or lost its lease)")
    try:
        return spec, NodeRecord.loads(raw)
    except ValidationError as exc:
        raise PermanentError(f'container "{container}": the record of node "{spec.node}" '
                             f"is invalid: {load_error(exc)}") from exc


async def exec_(
    etcd: KeyValue, request: common_pb2.ExecRequest, dialer: AgentDialer = PLAINTEXT
) -> AsyncIterator[common_pb2.ExecOutput]:
    _, node = await locate(etcd, request.container)
    async with dialer.channel(node) as channel:
        call = agent_stub(channel).Exec(request)
        async for frame in _relay(call, node):
            yield frame


async def logs(
    etcd: KeyValue, request: common_pb2.LogsRequest, dialer: AgentDialer = PLAINTEXT
) -> AsyncIterator[common_pb2.LogEntry]:
    _, node = await locate(etcd, request.container)
    async with dialer.channel(node) as channel:
        call = agent_stub(channel).Logs(request)
        async for frame in _relay(call, node):
            yield frame


async def _relay(call: grpc.aio.UnaryStreamCall[Any, T], node: NodeRecord) -> AsyncIterator[T]:
    try:
        async for frame in call:
            yield frame
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            raise NodeUnavailable(f"cannot reach the agent of node {node.name} at "
                                  f"{node.agent_addr}: {exc.details()}") from exc
        raise AgentRejected(exc.details() or exc.code().name, exc.code()) from exc
    finally:
        call.cancel()   # the client went away: stop the agent side too

"""Create sockets inside another network namespace without forking.

agent/dns/server.py calls this to bind 127.0.0.11:53 inside each container and
to open the sockets that forward misses upstream from the container's own
network; netplugins/netlink.py opens its netlink sockets in container and host
namespaces the same way. pyroute2's own netns support forks a child to do
this, and a fork of a process that runs gRPC threads can crash the child
(seen here: SIGSEGV), so berth never forks for it.

Design notes:
- A socket belongs to the netns it was created in, for its whole life, no
  matter which thread later reads it. So one dedicated thread enters the
  target netns with setns(2), creates the sockets, and returns to the agent's
  netns; the asyncio loop then serves them. This is libnetwork's SetupFunc
  model without a helper process.
- setns(CLONE_NEWNET) only moves the calling thread, which is why it must be a
  thread of our own: a shared executor thread left in a container netns would
  silently open the agent's other sockets in the wrong place.
- "Home" is the netns of the thread that built the NetnsThread (the agent's
  loop thread), not the root netns: in the lab the agent itself runs inside a
  simulated host's netns.
- Namespaces are held open by fd, not re-opened by path: /proc/<pid>/ns/net
  paths can be reused by a later process, and an fd keeps the netns alive
  until we close it even if the container dies meanwhile.
- Python 3.11 has no os.setns, so it is called through ctypes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from berth.errors import PermanentError

T = TypeVar("T")


class NetnsError(PermanentError):
    """Opening, entering or leaving a network namespace failed."""


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass(frozen=True)
class NetnsHandle:
    """An open network namespace: an fd plus its identity (device, inode)."""

    path: str
    fd: int
    identity: tuple[int, int]

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def netns_identity(path: str) -> tuple[int, int]:
    """(st_dev, st_ino) of a netns file: equal identities mean the same netns."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise NetnsError(f"cannot stat netns {path}: {exc.strerror}") from exc
    return (st.st_dev, st.st_ino)


def open_netns(path: str) -> NetnsHandle:
    """Open ``path`` (/run/netns/NAME or /proc/PID/ns/net) for later setns."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetnsError(f"cannot open netns {path}: {exc.strerror}") from exc
    st = os.fstat(fd)
    return NetnsHandle(path=path, fd=fd, identity=(st.st_dev, st.st_ino))


class NetnsThread:
    """One thread that runs short functions inside a given netns."""

    def __init__(self) -> None:
        # Opened here, in the caller's thread, so "home" is the agent's netns.
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="berth-netns")

    async def run(
        self,
        netns: NetnsHandle,
        fn: Callable[[], T],
        on_orphan: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``fn`` inside ``netns`` and return its result.

        ``fn`` cannot be interrupted once started. If the awaiting task is
        cancelled, this still waits for ``fn`` (it takes microseconds) so the
        caller may safely close ``netns`` afterwards, hands the result to
        ``on_orphan`` so sockets are not leaked, and then re-raises.
        """
        future = asyncio.wrap_future(self._executor.submit(self._enter_and_run, netns, fn))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([future])
            if on_orphan is not None and not future.cancelled() and future.exception() is None:
                on_orphan(future.result())
            raise

    def _enter_and_run(self, netns: NetnsHandle, fn: Callable[[], T]) -> T:
        try:
            _setns(netns.fd)
        except OSError as exc:
            raise NetnsError(f"cannot enter netns {netns.path}: {exc.strerror}") from exc
        try:
            return fn()
        finally:
            # If going home fails the thread stays elsewhere; harmless, because
            # every call enters its target first and this thread is ours alone.
            try:
                _setns(self._home)
            except OSError as exc:
                raise NetnsError(f"cannot return from netns {netns.path}") from exc

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        os.close(self._home)



_threads: dict[int, NetnsThread] = {}
NETLINK_ROUTE = 0


def _netns_thread() -> NetnsThread:
    # One per process, built on first use from the event loop's thread ("home").
    pid = os.getpid()
    if pid not in _threads:
        _threads[pid] = NetnsThread()
    return _threads[pid]


def _new_route_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)


async def netlink_socket(path: str) -> socket.socket:
    """A NETLINK_ROUTE socket that lives in the netns at ``path``.

    Hand it to pyroute2 as ``AsyncIPRoute(fileno=sock.detach())``.
    """
    handle = open_netns(path)
    try:
        return await _netns_thread().run(handle, _new_route_socket, on_orphan=socket.socket.close)
    finally:
        handle.close()


async def _ip_netns(verb: str, name: str) -> None:
    # iproute2 forks and execs, which is safe next to gRPC threads (a bare fork is not).
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", verb, name,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise NetnsError(f"ip netns {verb} {name}: {err.decode(errors='replace').strip()}")


async def create_named(name: str) -> None:
    """Create /run/netns/NAME (loopback down, as the kernel makes it)."""
    await _ip_netns("add", name)


async def remove_named(name: str) -> None:
    """Delete /run/netns/NAME; its links go with it once nothing else holds it."""
    await _ip_netns("delete", name)

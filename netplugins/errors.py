"""Errors raised by network drivers; the agent decides retry policy from the base class.

    BerthError (berth.errors)
    └── NetpluginError
        ├── UnknownDriverError   (UserError)       no driver of that name in the registry
        ├── NetworkConfigError   (UserError)       the network spec cannot work (no VNI, bad MTU)
        ├── NetnsNotFoundError   (PermanentError)  the container's netns path is gone
        ├── AttachConflictError  (PermanentError)  the interface name is taken in the netns
        ├── CheckFailedError     (PermanentError)  CHECK found the kernel differs from the result
        ├── ResultFormatError    (PermanentError)  a stored AttachResult does not parse
        ├── KernelError          (TemporaryError)  a netlink request failed; worth another pass
        └── ParentUnavailableError                 macvlan: this node cannot give the network
            │                                      its parent; the message is the replica's
            │                                      pending reason
            ├── ParentMissingError   (TemporaryError)  no such interface (yet) on this node
            ├── ParentUnusableError  (TemporaryError)  the parent cannot carry this macvlan now
            │                                          (not Ethernet, passed through, a bond port)
            └── VlanUnsupportedError (PermanentError)  the kernel cannot make 802.1q
                                                       sub-interfaces (no module 8021q)

Drivers wrap pyroute2's ``NetlinkError`` and ``OSError`` into these with ``raise ... from exc``
so that callers never need to import pyroute2 to handle failures.
"""

from __future__ import annotations

from berth.errors import BerthError, PermanentError, TemporaryError, UserError


class NetpluginError(BerthError):
    """Base of every error a driver raises on purpose."""


class UnknownDriverError(NetpluginError, UserError):
    """The network names a driver this build does not have."""


class NetworkConfigError(NetpluginError, UserError):
    """The network's spec cannot be realised by its driver."""


class NetnsNotFoundError(NetpluginError, PermanentError):
    """The netns path given in the attachment does not exist (the container is gone)."""


class AttachConflictError(NetpluginError, PermanentError):
    """The interface the attachment asks for already exists inside the container."""


class CheckFailedError(NetpluginError, PermanentError):
    """CHECK found a difference; ``problems`` lists each one in words."""

    def __init__(self, what: str, problems: list[str]) -> None:
        super().__init__(f"{what}: " + "; ".join(problems))
        self.problems = tuple(problems)


class ResultFormatError(NetpluginError, PermanentError):
    """A stored AttachResult is not valid JSON of the expected shape."""


class KernelError(NetpluginError, TemporaryError):
    """A netlink request failed; ``errno`` is the kernel's error number (0 if unknown)."""

    def __init__(self, message: str, *, errno: int = 0, delay: float = 1.0) -> None:
        super().__init__(message, delay=delay)
        self.errno = errno


class ParentUnavailableError(NetpluginError):
    """A macvlan network's parent interface cannot be used on this node.

    The message is one line meant for a person (the agent shows it as the reason the
    replica waits); the subclasses say whether waiting can help.
    """


class ParentMissingError(ParentUnavailableError, TemporaryError):
    """The parent (or the base of a VLAN parent) does not exist; an operator may add it."""

    def __init__(self, message: str, *, delay: float = 10.0) -> None:
        super().__init__(message, delay=delay)


class ParentUnusableError(ParentUnavailableError, TemporaryError):
    """The parent exists but cannot carry this macvlan: it is not Ethernet, or something
    else holds it (a passthru macvlan, a bridge or bond it is a port of)."""

    def __init__(self, message: str, *, delay: float = 10.0) -> None:
        super().__init__(message, delay=delay)


class VlanUnsupportedError(ParentUnavailableError, PermanentError):
    """The parent is an 802.1q sub-interface to create, and the kernel has no 802.1q."""

"""Errors raised by the container runtime (images, rootfs, bundles, conmon, runc).

Callers (the agent's reconcile loop and its gRPC servicer) sort these by the
berth base class they derive from::

    berth.errors.BerthError
    ├── UserError
    │   ├── InvalidReference      an image name that cannot be parsed
    │   └── SpecError             spec + image leave nothing to run, a bad user,
    │                             or a network_mode that cannot be carried out
    ├── TemporaryError
    │   └── PendingError          the container cannot be created on this node yet: its
    │       │                     status is pending with this reason; retried with backoff
    │       └── JoinTargetNotRunning  network_mode container:X and X is not running here
    └── PermanentError
        └── RuntimeFailure     base of everything below
            ├── ImageNotFound      ref is not in the ImageStore
            ├── ImageFormatError   a tar that is neither docker-save nor OCI layout,
            │                      or a layer that tries to write outside its dir
            ├── ContainerNotFound  no container of that name in the state dir
            ├── ContainerExists    create() of a name already present
            ├── InvalidTransition  a verb not allowed in the current state
            ├── MountError         overlay mount/unmount failed
            └── OCIRuntimeError    runc/crun/conmon exited non-zero; carries stderr
"""

from __future__ import annotations

import grpc

from berth import lifecycle
from berth.errors import NotFoundError, PermanentError, TemporaryError, UserError


class InvalidReference(UserError):
    """An image reference that is not ``[registry/]repo[:tag]``."""


class SpecError(UserError):
    """The container spec cannot be turned into a runnable OCI config."""


class PendingError(TemporaryError):
    """The container cannot be created on this node yet; the message says why.

    The reconciler reports it as the container's pending reason and tries again with
    doubling waits, never longer apart than ``delay`` seconds (a joiner's target may
    start any moment: one second; a driver refusing this node: half a minute). The agent
    raises subclasses for its own reasons (a network driver refusing this node,
    agent.errors).
    """


class JoinTargetNotRunning(PendingError):
    """``network_mode: container:X`` and X is not running on this node (yet)."""


class RuntimeFailure(PermanentError):
    """Base for permanent runtime failures."""


class ImageNotFound(RuntimeFailure, NotFoundError):
    """The image reference is not loaded on this node."""


class ImageFormatError(RuntimeFailure):
    """An image archive is malformed or unsafe. The message is always one line.

    Over gRPC it is the sender's fault (INVALID_ARGUMENT), though retrying never helps.
    """

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()) if "\n" in message or "\r" in message
                         else message)


class ContainerNotFound(RuntimeFailure, NotFoundError):
    """No container with that name exists on this node."""


class ContainerExists(RuntimeFailure):
    """A container with that name already exists on this node."""


class InvalidTransition(RuntimeFailure, lifecycle.InvalidTransition):
    """The lifecycle verb or record change is not allowed in the container's state."""


class MountError(RuntimeFailure):
    """Mounting or unmounting a container rootfs failed."""


class OCIRuntimeError(RuntimeFailure):
    """The OCI runtime or the monitor failed; ``stderr`` holds its own words."""

    def __init__(self, message: str, *, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(f"{message}: {stderr.strip()}" if stderr.strip() else message)
        self.stderr = stderr
        self.returncode = returncode

"""Image reference parsing: ``[registry/]repo[:tag][@digest]`` normalised like Docker.

``busybox``, ``busybox:latest`` and ``docker.io/library/busybox:latest`` are the
same image. Used by images.ImageStore and by callers that display refs.
"""

from __future__ import annotations

import re

from agent.runtime.errors import InvalidReference
from berth.digest import Digest, DigestError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# fullmatch, never ``$``: ``$`` also matches before a trailing newline.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REGISTRY = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?")
MAX_REFERENCE = 512   # name (Docker: 255) + tag (128) + digest (71), rounded up


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _REGISTRY.fullmatch(first):
            raise InvalidReference(f"invalid registry in image reference {name!r}")
        return first, rest
    return DEFAULT_REGISTRY, name


def normalize(ref: str) -> str:
    """Return the canonical ``registry/repo:tag`` (or ``registry/repo@sha256:...``) form."""
    ref = ref.strip()
    if not ref:
        raise InvalidReference("empty image reference")
    if len(ref) > MAX_REFERENCE:
        raise InvalidReference(f"image reference is longer than {MAX_REFERENCE} characters")
    name, _, digest = ref.partition("@")
    if digest:
        try:
            digest = str(Digest.parse(digest, f"image reference {ref!r}"))
        except DigestError as exc:
            raise InvalidReference(str(exc)) from exc
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"invalid tag in image reference {ref!r}")
    registry, repo = _split_registry(name)
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        repo = f"library/{repo}"
    if not repo or not all(_COMPONENT.fullmatch(part) for part in repo.split("/")):
        raise InvalidReference(f"invalid repository name in image reference {ref!r}")
    if digest:
        return f"{registry}/{repo}@{digest}" if not tag else f"{registry}/{repo}:{tag}@{digest}"
    return f"{registry}/{repo}:{tag or DEFAULT_TAG}"


def familiar(ref: str) -> str:
    """The short form Docker shows: ``busybox:latest`` for ``docker.io/library/busybox:latest``."""
    for prefix in (f"{DEFAULT_REGISTRY}/library/", f"{DEFAULT_REGISTRY}/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref

"""Reading docker-save and OCI-layout archives: what images they hold, parsed strictly.

Used by images.ImageStore.load. Nothing here writes to disk. Every digest is parsed with
``berth.digest.Digest`` where it enters, every JSON document is bounded in size
(``MAX_JSON_BYTES``) and checked for shape, and counts are bounded: archive members,
images per manifest.json, manifests per index, layers per image, and index nesting.
Anything else is an ImageFormatError with one line naming the document and field.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass
from typing import Any

from agent.runtime.errors import ImageFormatError
from berth.digest import Digest, DigestError
from berth.imagelimits import (
    MAX_ARCHIVE_MEMBERS,
    MAX_INDEX_DEPTH,
    MAX_JSON_BYTES,
    MAX_LAYERS,
    MAX_MANIFESTS,
)

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
# docker-save names: "<hex>.json" / "<v1 id>/layer.tar" (before Docker 25), or OCI blobs.
_BLOB = re.compile(r"blobs/sha256/([a-f0-9]{64})")
_OLD_CONFIG = re.compile(r"([a-f0-9]{64})\.json")
_OLD_LAYER = re.compile(r"[a-f0-9]{64}/layer\.tar")


@dataclass(frozen=True)
class LayerSource:
    member: str                    # the blob's name in the archive
    blob_digest: Digest | None     # when the archive names the blob by its digest


@dataclass(frozen=True)
class ImageSource:
    config_raw: bytes
    layers: tuple[LayerSource, ...]
    names: tuple[str, ...]         # references as the archive writes them (not normalised)
    bare_tag_ok: bool = False      # OCI ref.name may be a bare tag; docker RepoTags may not
    what: str = "image config"     # where the config came from, for error messages


def digest(value: object, what: str) -> Digest:
    try:
        return Digest.parse(value, what)
    except DigestError as exc:
        raise ImageFormatError(str(exc)) from exc


def obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ImageFormatError(f"{what} is not a JSON object")
    return value


def items(value: object, what: str, limit: int) -> list[Any]:
    """A JSON list (``null`` counts as empty) of at most ``limit`` entries."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ImageFormatError(f"{what} is not a list")
    if len(value) > limit:
        raise ImageFormatError(f"{what} has {len(value)} entries; the limit is {limit}")
    return value


def strings(value: object, what: str, limit: int) -> list[str]:
    values = items(value, what, limit)
    if not all(isinstance(v, str) for v in values):
        raise ImageFormatError(f"{what} must hold only strings")
    return values


def member_names(tar: tarfile.TarFile) -> set[str]:
    """The archive's member names, refusing archives with too many members."""
    names: set[str] = set()
    for count, member in enumerate(tar, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise ImageFormatError(f"archive has more than {MAX_ARCHIVE_MEMBERS} entries")
        names.add(member.name[2:] if member.name.startswith("./") else member.name)
    return names


def read_json(tar: tarfile.TarFile, name: str, what: str) -> Any:
    """Parse the member ``name`` as JSON, refusing anything over MAX_JSON_BYTES."""
    return parse_json(read_member(tar, name, MAX_JSON_BYTES), what)


def parse_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "too deeply nested"
        raise ImageFormatError(f"{what} is not valid JSON: {first}") from exc


def read_member(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    member = _member(tar, name)
    if member.size > limit:
        raise ImageFormatError(f"{name!r} in archive is {member.size} bytes; the limit is {limit}")
    src = tar.extractfile(member)
    if src is None:
        raise ImageFormatError(f"{name!r} in archive is not a file")
    with src:
        return src.read(limit + 1)


def _member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    for candidate in (name, f"./{name}"):
        try:
            member = tar.getmember(candidate)
        except KeyError:
            continue
        if not member.isfile():
            raise ImageFormatError(f"{name!r} in archive is not a regular file")
        return member
    raise ImageFormatError(f"archive has no {name!r}")


def open_blob(tar: tarfile.TarFile, name: str) -> Any:
    """A file object for a layer blob (its digest is verified while it is unpacked)."""
    src = tar.extractfile(_member(tar, name))
    if src is None:
        raise ImageFormatError(f"{name!r} in archive is not a file")
    return src


def blob_name(d: Digest) -> str:
    return f"blobs/sha256/{d.hex}"


def verified_blob(tar: tarfile.TarFile, d: Digest, what: str) -> bytes:
    raw = read_member(tar, blob_name(d), MAX_JSON_BYTES)
    if Digest.of(raw) != d:
        raise ImageFormatError(f"{what} blob does not match its digest {d}")
    return raw


def config_diff_ids(config: object, what: str) -> list[Digest]:
    rootfs = obj(obj(config, what).get("rootfs"), f"{what}: rootfs")
    ids = items(rootfs.get("diff_ids"), f"{what}: rootfs.diff_ids", MAX_LAYERS)
    return [digest(d, f"{what}: rootfs.diff_ids[{i}]") for i, d in enumerate(ids)]


# --- docker-save -----------------------------------------------------------------------

def docker_images(tar: tarfile.TarFile) -> list[ImageSource]:
    entries = items(read_json(tar, "manifest.json", "manifest.json"), "manifest.json",
                    MAX_MANIFESTS)
    return [_docker_image(tar, obj(e, f"manifest.json[{i}]"), f"manifest.json[{i}]")
            for i, e in enumerate(entries)]


def _docker_image(tar: tarfile.TarFile, entry: dict[str, Any], what: str) -> ImageSource:
    config_name = entry.get("Config")
    if not isinstance(config_name, str):
        raise ImageFormatError(f"{what}: Config is not a string")
    match = _BLOB.fullmatch(config_name) or _OLD_CONFIG.fullmatch(config_name)
    if match is None:
        raise ImageFormatError(f"{what}: Config {config_name[:80]!r} is not a digest name "
                               "(blobs/sha256/<hex> or <hex>.json)")
    config_raw = read_member(tar, config_name, MAX_JSON_BYTES)
    if Digest.of(config_raw).hex != match.group(1):
        raise ImageFormatError(f"{what}: config {config_name!r} does not match its digest")
    layers = []
    for i, name in enumerate(strings(entry.get("Layers"), f"{what}: Layers", MAX_LAYERS)):
        blob = _BLOB.fullmatch(name)
        if blob is None and not _OLD_LAYER.fullmatch(name):
            raise ImageFormatError(f"{what}: Layers[{i}] {name[:80]!r} is not a layer name "
                                   "(blobs/sha256/<hex> or <id>/layer.tar)")
        layers.append(LayerSource(name, Digest(blob.group(1)) if blob else None))
    names = strings(entry.get("RepoTags"), f"{what}: RepoTags", MAX_MANIFESTS)
    return ImageSource(config_raw, tuple(layers), tuple(names), what=f"config of {what}")


# --- OCI image layout ------------------------------------------------------------------

def oci_images(tar: tarfile.TarFile) -> list[ImageSource]:
    index = obj(read_json(tar, "index.json", "index.json"), "index.json")
    descs = items(index.get("manifests"), "index.json: manifests", MAX_MANIFESTS)
    images = []
    for i, raw_desc in enumerate(descs):
        desc = obj(raw_desc, f"index.json: manifests[{i}]")
        manifest = _resolve_manifest(tar, desc, f"index.json: manifests[{i}]")
        images.append(_oci_image(tar, manifest, _oci_names(desc),
                                 f"config of index.json: manifests[{i}]"))
    return images


def _resolve_manifest(tar: tarfile.TarFile, desc: dict[str, Any], what: str) -> dict[str, Any]:
    """Follow (nested) indexes from ``desc`` down to one image manifest, for our platform."""
    d = digest(desc.get("digest"), f"{what}.digest")
    for _ in range(MAX_INDEX_DEPTH + 1):
        manifest = obj(parse_json(verified_blob(tar, d, "manifest"), f"manifest {d}"),
                       f"manifest {d}")
        if manifest.get("mediaType") not in _INDEX_TYPES and "manifests" not in manifest:
            return manifest
        d = _pick_platform(manifest, f"index {d}")
    raise ImageFormatError(f"{what}: indexes nested more than {MAX_INDEX_DEPTH} deep")


def _oci_image(tar: tarfile.TarFile, manifest: dict[str, Any], names: list[str],
               what: str) -> ImageSource:
    config = obj(manifest.get("config"), "manifest: config")
    config_digest = digest(config.get("digest"), "manifest: config.digest")
    config_raw = verified_blob(tar, config_digest, "config")
    layers = []
    for i, raw in enumerate(items(manifest.get("layers"), "manifest: layers", MAX_LAYERS)):
        d = digest(obj(raw, f"manifest: layers[{i}]").get("digest"), f"manifest: layers[{i}]")
        layers.append(LayerSource(blob_name(d), d))
    return ImageSource(config_raw, tuple(layers), tuple(names), bare_tag_ok=True, what=what)


def _oci_names(desc: dict[str, Any]) -> list[str]:
    notes = desc.get("annotations")
    notes = notes if isinstance(notes, dict) else {}
    name = notes.get(CONTAINERD_NAME) or notes.get(REF_NAME)
    return [name] if isinstance(name, str) and name else []


def _pick_platform(index: dict[str, Any], what: str) -> Digest:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    manifests = [obj(m, f"{what}: manifests[{i}]") for i, m in
                 enumerate(items(index.get("manifests"), f"{what}: manifests", MAX_MANIFESTS))]
    if not manifests:
        raise ImageFormatError(f"{what} has no manifests")
    for i, m in enumerate(manifests):
        platform = m.get("platform")
        platform = platform if isinstance(platform, dict) else {}
        if platform.get("os", "linux") == "linux" and platform.get("architecture") == arch:
            return digest(m.get("digest"), f"{what}: manifests[{i}].digest")
    return digest(manifests[0].get("digest"), f"{what}: manifests[0].digest")

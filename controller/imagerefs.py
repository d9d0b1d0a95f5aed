"""Which image references an archive names: a bounded, read-only scan of its tar.

Used by images.ImageStore.load before anything is pushed or recorded. The controller
does not unpack archives (each agent does, strictly, in agent/runtime/); it only reads
``manifest.json`` (docker-save) or ``index.json`` (OCI layout), each at most
``MAX_JSON_BYTES``, in an archive of at most ``MAX_ARCHIVE_MEMBERS`` entries. Every
failure is a one-line UserError.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from berth.errors import UserError
from berth.imagelimits import MAX_ARCHIVE_MEMBERS, MAX_JSON_BYTES, MAX_MANIFESTS


def normalise_ref(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; refs with a tag or digest are kept."""
    last = ref.rsplit("/", 1)[-1]
    return ref if (":" in last or "@" in ref) else f"{ref}:latest"


def archive_refs(path: Path) -> list[str]:
    """The image references a docker-save or OCI-layout tar names."""
    try:
        with tarfile.open(path) as tar:
            members = _members(tar)
            if "manifest.json" in members:
                return _docker_refs(_read_json(tar, members["manifest.json"]))
            if "index.json" in members:
                return _oci_refs(_read_json(tar, members["index.json"]))
    except tarfile.ReadError as exc:
        raise UserError(
            "image load: not a tar archive (expected docker-save or OCI layout)"
        ) from exc
    except (tarfile.TarError, ValueError, KeyError, EOFError, RecursionError) as exc:
        # tarfile's and json's messages can span lines; the person gets one.
        first = str(exc).splitlines()[0] if str(exc) else "malformed"
        raise UserError(f"image load: not a docker-save or OCI layout tar: {first}") from exc
    raise UserError("image load: not a docker-save or OCI layout tar "
                    "(neither manifest.json nor index.json found)")


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    found: dict[str, tarfile.TarInfo] = {}
    for count, member in enumerate(tar, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise UserError(f"image load: the archive has more than {MAX_ARCHIVE_MEMBERS} "
                            "entries")
        name = member.name[2:] if member.name.startswith("./") else member.name
        if name in ("manifest.json", "index.json"):
            found[name] = member
    return found


def _read_json(tar: tarfile.TarFile, member: tarfile.TarInfo) -> object:
    if not member.isfile():
        raise ValueError(f"{member.name} is not a file")
    if member.size > MAX_JSON_BYTES:
        raise UserError(f"image load: {member.name} is {member.size} bytes; the limit is "
                        f"{MAX_JSON_BYTES}")
    src = tar.extractfile(member)
    if src is None:
        raise ValueError(f"{member.name} is not a file")
    with src:
        return json.loads(src.read(MAX_JSON_BYTES + 1))


def _docker_refs(manifest: object) -> list[str]:
    if not isinstance(manifest, list):
        raise ValueError("manifest.json is not a list")
    if len(manifest) > MAX_MANIFESTS:
        raise ValueError(f"manifest.json has more than {MAX_MANIFESTS} images")
    refs = []
    for entry in manifest:
        tags = entry.get("RepoTags") if isinstance(entry, dict) else None
        if isinstance(tags, list):
            refs += [tag for tag in tags[:MAX_MANIFESTS] if isinstance(tag, str)]
    return sorted({normalise_ref(r) for r in refs})


def _oci_refs(index: object) -> list[str]:
    if not isinstance(index, dict):
        raise ValueError("index.json is not an object")
    descs = index.get("manifests") or []
    if not isinstance(descs, list) or len(descs) > MAX_MANIFESTS:
        raise ValueError(f"index.json: manifests is not a list of at most {MAX_MANIFESTS}")
    refs = []
    for desc in descs:
        notes = desc.get("annotations") if isinstance(desc, dict) else None
        notes = notes if isinstance(notes, dict) else {}
        # containerd/docker write the full name separately; ref.name may be only a tag.
        name = (notes.get("io.containerd.image.name")
                or notes.get("org.opencontainers.image.ref.name"))
        if isinstance(name, str) and name:
            refs.append(normalise_ref(name))
    return sorted(set(refs))

"""Content-addressed image store on one node: layers unpacked once, configs by digest, refs.

The agent calls ``ImageStore.load`` for docker-save and OCI-layout tars and the
container runtime calls ``resolve`` to turn a spec's image name into layer
directories for the overlay mount. Layout under the state dir::

    layers/<sha256 of uncompressed diff>/   one unpacked layer, shared by all images
    configs/<sha256 of config>.json         image config blob; its digest is the image id
    refs.json                               {"docker.io/library/busybox:latest": "sha256:..."}

refs.json is rewritten atomically (temp file + rename) under an flock, so two
processes loading images at once do not lose each other's tags.
"""

from __future__ import annotations

import builtins
import fcntl
import hashlib
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.runtime.errors import ImageFormatError, ImageNotFound, InvalidReference
from agent.runtime.layers import unpack_layer
from agent.runtime.reference import normalize

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


@dataclass(frozen=True)
class Image:
    """What the runtime needs from an image: its layers and its run defaults."""

    ref: str
    id: str
    layers: tuple[Path, ...]          # bottom -> top
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    env: tuple[str, ...]
    workdir: str
    user: str


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _strs(value: Any) -> tuple[str, ...] | None:
    return tuple(str(v) for v in value) if isinstance(value, list) else None


def _read_member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.extractfile(name[2:] if name.startswith("./") else name)
    except KeyError as exc:
        raise ImageFormatError(f"archive has no {name!r}") from exc
    if member is None:
        raise ImageFormatError(f"{name!r} in archive is not a file")
    return member.read()


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ImageFormatError(f"{what} is not valid JSON: {exc}") from exc


class ImageStore:
    """Images on this node, keyed by normalised reference and by config digest."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        self.layers_dir = state_dir / "layers"
        self.configs_dir = state_dir / "configs"
        self._refs_path = state_dir / "refs.json"
        for d in (self.layers_dir, self.configs_dir):
            d.mkdir(parents=True, exist_ok=True)

    # --- refs index -------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read_refs(self) -> dict[str, str]:
        try:
            data = json.loads(self._refs_path.read_bytes())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def _write_refs(self, refs: dict[str, str]) -> None:
        tmp = self._refs_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(refs, indent=1, sort_keys=True))
        os.replace(tmp, self._refs_path)

    def _tag(self, tags: dict[str, str]) -> None:
        with self._locked():
            refs = self._read_refs()
            refs.update(tags)
            self._write_refs(refs)

    # --- loading ---------------------------------------------------------------------

    def load(self, tar_path: Path) -> builtins.list[str]:
        """Load a docker-save or OCI-layout tar (optionally gzip'd); return the refs it tagged.

        An image without a tag is still stored; its id (``sha256:...``) is returned instead.
        """
        try:
            with tarfile.open(tar_path, mode="r:*") as tar:
                names = set(tar.getnames())
                if "manifest.json" in names:
                    tags = self._load_docker(tar)
                elif "index.json" in names and "oci-layout" in names:
                    tags = self._load_oci(tar)
                else:
                    raise ImageFormatError(
                        f"{tar_path}: neither a docker-save (manifest.json) nor an OCI layout"
                    )
        except (tarfile.TarError, OSError) as exc:
            raise ImageFormatError(f"{tar_path}: {exc}") from exc
        self._tag({ref: image_id for ref, image_id in tags if ref != image_id})
        return [ref for ref, _ in tags]

    def _store_image(self, tar: tarfile.TarFile, config_raw: bytes,
                     layer_names: list[str]) -> str:
        """Unpack missing layers and store the config; return the image id."""
        config = _json(config_raw, "image config")
        diff_ids = config.get("rootfs", {}).get("diff_ids") or []
        if len(diff_ids) != len(layer_names):
            raise ImageFormatError(
                f"config lists {len(diff_ids)} diff_ids but the manifest {len(layer_names)} layers"
            )
        for name, diff_id in zip(layer_names, diff_ids, strict=True):
            if (self.layers_dir / str(diff_id).partition(":")[2]).is_dir():
                continue  # dedupe: this layer is already unpacked
            blob = tar.extractfile(name)
            if blob is None:
                raise ImageFormatError(f"layer {name!r} is missing from the archive")
            with blob:
                unpack_layer(blob, self.layers_dir, str(diff_id))
        image_id = _sha256(config_raw)
        dest = self.configs_dir / f"{image_id.partition(':')[2]}.json"
        if not dest.exists():
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(config_raw)
            os.replace(tmp, dest)
        return image_id

    def _load_docker(self, tar: tarfile.TarFile) -> list[tuple[str, str]]:
        manifest = _json(_read_member(tar, "manifest.json"), "manifest.json")
        if not isinstance(manifest, list):
            raise ImageFormatError("manifest.json is not a list")
        tags: list[tuple[str, str]] = []
        for entry in manifest:
            config_raw = _read_member(tar, entry["Config"])
            image_id = self._store_image(tar, config_raw, list(entry.get("Layers") or []))
            repo_tags = entry.get("RepoTags") or []
            tags.extend((normalize(t), image_id) for t in repo_tags)
            if not repo_tags:
                tags.append((image_id, image_id))
        return tags

    def _oci_blob(self, tar: tarfile.TarFile, digest: str) -> bytes:
        algo, _, hexdigest = digest.partition(":")
        raw = _read_member(tar, f"blobs/{algo}/{hexdigest}")
        if _sha256(raw) != digest:
            raise ImageFormatError(f"blob {digest} does not match its digest")
        return raw

    def _load_oci(self, tar: tarfile.TarFile) -> list[tuple[str, str]]:
        index = _json(_read_member(tar, "index.json"), "index.json")
        tags: list[tuple[str, str]] = []
        for desc in index.get("manifests") or []:
            annotations = desc.get("annotations") or {}
            manifest = _json(self._oci_blob(tar, desc["digest"]), "OCI manifest")
            while manifest.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
                manifest = _json(self._oci_blob(tar, self._pick_platform(manifest)), "manifest")
            config_raw = self._oci_blob(tar, manifest["config"]["digest"])
            layer_names = [
                "blobs/{}/{}".format(*layer["digest"].split(":", 1))
                for layer in manifest.get("layers") or []
            ]
            image_id = self._store_image(tar, config_raw, layer_names)
            name = annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME)
            try:
                tags.append((normalize(name), image_id) if name else (image_id, image_id))
            except InvalidReference:  # a bare tag like "1.0" with no repository
                tags.append((image_id, image_id))
        return tags

    @staticmethod
    def _pick_platform(index: dict[str, Any]) -> str:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
        manifests = index.get("manifests") or []
        for m in manifests:
            platform = m.get("platform") or {}
            if platform.get("os", "linux") == "linux" and platform.get("architecture") == arch:
                return str(m["digest"])
        if not manifests:
            raise ImageFormatError("image index has no manifests")
        return str(manifests[0]["digest"])

    # --- queries ---------------------------------------------------------------------

    def _image_id(self, ref: str) -> tuple[str, str]:
        if ref.startswith("sha256:"):
            if (self.configs_dir / f"{ref[7:]}.json").exists():
                return ref, ref
            raise ImageNotFound(f"no such image: {ref}")
        try:
            canonical = normalize(ref)
        except InvalidReference as exc:
            raise ImageNotFound(f"no such image: {ref}") from exc
        image_id = self._read_refs().get(canonical)
        if image_id is None:
            raise ImageNotFound(f"no such image: {ref}")
        return canonical, image_id

    def has(self, ref: str) -> bool:
        try:
            self._image_id(ref)
        except ImageNotFound:
            return False
        return True

    def resolve(self, ref: str) -> Image:
        """Return the image for ``ref`` (a name or a ``sha256:`` id) or raise ImageNotFound."""
        canonical, image_id = self._image_id(ref)
        try:
            raw = (self.configs_dir / f"{image_id.partition(':')[2]}.json").read_bytes()
        except FileNotFoundError as exc:
            raise ImageNotFound(f"image {ref}: config {image_id} is missing") from exc
        config = _json(raw, f"config of {ref}")
        run = config.get("config") or {}
        layers = tuple(
            self.layers_dir / str(d).partition(":")[2] for d in config["rootfs"]["diff_ids"]
        )
        return Image(
            ref=canonical, id=image_id, layers=layers,
            entrypoint=_strs(run.get("Entrypoint")), cmd=_strs(run.get("Cmd")),
            env=_strs(run.get("Env")) or (), workdir=str(run.get("WorkingDir") or ""),
            user=str(run.get("User") or ""),
        )

    def list(self) -> builtins.list[str]:
        """Every tagged reference, sorted."""
        return sorted(self._read_refs())

    def remove(self, ref: str) -> None:
        """Untag ``ref``; drop its config when no other tag uses it. Layers stay (see prune)."""
        canonical, image_id = self._image_id(ref)
        with self._locked():
            refs = self._read_refs()
            refs.pop(canonical, None)
            self._write_refs(refs)
        if image_id not in refs.values():
            (self.configs_dir / f"{image_id.partition(':')[2]}.json").unlink(missing_ok=True)

    def prune(self, in_use: set[Path] | None = None) -> builtins.list[Path]:
        """Remove layer dirs no stored config references and no caller holds; return them."""
        keep = set(in_use or ())
        for cfg in self.configs_dir.glob("*.json"):
            diff_ids = _json(cfg.read_bytes(), str(cfg)).get("rootfs", {}).get("diff_ids", [])
            keep.update(self.layers_dir / str(d).partition(":")[2] for d in diff_ids)
        # Dot-names are unpacks in progress (layers.unpack_layer); never prune those.
        removed = [
            p for p in self.layers_dir.iterdir() if p not in keep and not p.name.startswith(".")
        ]
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        return removed

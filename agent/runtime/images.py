"""Content-addressed image store on one node: layers unpacked once, configs by digest, refs.

The agent calls ``ImageStore.load`` for docker-save and OCI-layout tars and the
container runtime calls ``resolve`` to turn a spec's image name into layer
directories for the overlay mount. Layout under the state dir (all root-only, 0700)::

    layers/<hex of diff_id>/                one unpacked layer, shared by all images
    layers.json                             the layers whose unpack was verified
    configs/<hex of config digest>.json     image config blob; its digest is the image id
    refs.json                               {"docker.io/library/busybox:latest": "sha256:..."}

Archives are untrusted: imageformat.py parses them strictly (digests, sizes, counts) and
every path here is built from a parsed ``Digest`` and checked to stay in its directory
(berth.digest). A layer is present only if layerstore.py's record says so. refs.json is
rewritten atomically (temp file + rename) under an flock, so two processes loading
images at once do not lose each other's tags. Every failure is one ImageFormatError
(or ImageNotFound / InvalidReference for lookups) with a one-line message.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import tarfile
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.runtime import imageformat as fmt
from agent.runtime.errors import ImageFormatError, ImageNotFound, InvalidReference
from agent.runtime.layerstore import LayerStore, ensure_private_dir
from agent.runtime.reference import normalize
from berth.digest import Digest, DigestError, PathEscapeError, store_path


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


def _strs(value: Any) -> tuple[str, ...] | None:
    return tuple(str(v) for v in value) if isinstance(value, list) else None


class ImageStore:
    """Images on this node, keyed by normalised reference and by config digest."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        ensure_private_dir(state_dir)
        self.configs_dir = state_dir / "configs"
        ensure_private_dir(self.configs_dir)
        self.layers = LayerStore(state_dir, self._locked)
        self.layers_dir = self.layers.dir
        self._refs_path = state_dir / "refs.json"

    # --- refs index -------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read_refs(self) -> dict[str, Digest]:
        try:
            data = json.loads(self._refs_path.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return {str(k): Digest.parse(v, f"refs.json: {k!r}") for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, DigestError) as exc:
            raise ImageFormatError(f"{self._refs_path}: corrupt: {exc}") from exc

    def _write_refs(self, refs: dict[str, Digest]) -> None:
        tmp = self._refs_path.with_name(f".refs-{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps({k: str(v) for k, v in refs.items()}, indent=1,
                                  sort_keys=True))
        os.replace(tmp, self._refs_path)

    def _tag(self, tags: dict[str, Digest]) -> None:
        with self._locked():
            refs = self._read_refs()
            refs.update(tags)
            self._write_refs(refs)

    def _config_path(self, image_id: Digest) -> Path:
        return store_path(self.configs_dir, image_id, ".json")

    # --- loading ---------------------------------------------------------------------

    def load(self, tar_path: Path) -> builtins.list[str]:
        """Load a docker-save or OCI-layout tar (optionally gzip'd); return the refs it tagged.

        An image without a tag is still stored; its id (``sha256:...``) is returned instead.
        """
        try:
            with tarfile.open(tar_path, mode="r:*") as tar:
                names = fmt.member_names(tar)
                if "manifest.json" in names:
                    sources = fmt.docker_images(tar)
                elif "index.json" in names and "oci-layout" in names:
                    sources = fmt.oci_images(tar)
                else:
                    raise ImageFormatError(
                        "not an image archive: neither a docker-save (manifest.json) "
                        "nor an OCI layout (oci-layout and index.json)")
                tags = [tag for src in sources for tag in self._store_image(tar, src)]
        except (DigestError, PathEscapeError) as exc:
            raise ImageFormatError(str(exc)) from exc
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ImageFormatError(f"image archive: {exc}") from exc
        self._tag({ref: image_id for ref, image_id in tags if ref != str(image_id)})
        return [ref for ref, _ in tags]

    def _store_image(self, tar: tarfile.TarFile,
                     src: fmt.ImageSource) -> builtins.list[tuple[str, Digest]]:
        """Unpack missing layers and store the config; return (ref, image id) pairs."""
        config = fmt.parse_json(src.config_raw, src.what)
        diff_ids = fmt.config_diff_ids(config, src.what)
        if len(diff_ids) != len(src.layers):
            raise ImageFormatError(f"{src.what} lists {len(diff_ids)} diff_ids but the "
                                   f"manifest {len(src.layers)} layers")
        for layer, diff_id in zip(src.layers, diff_ids, strict=True):
            if self.layers.has(diff_id):
                continue  # dedupe: this layer is recorded as unpacked and verified
            with fmt.open_blob(tar, layer.member) as blob:
                self.layers.ensure(blob, diff_id, layer.blob_digest)
        image_id = Digest.of(src.config_raw)
        dest = self._config_path(image_id)
        if not dest.exists():
            tmp = dest.with_name(f".{image_id.hex}-{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_bytes(src.config_raw)
            os.replace(tmp, dest)
        tags = []
        for name in src.names:
            try:
                tags.append((normalize(name), image_id))
            except InvalidReference as exc:
                if not src.bare_tag_ok:
                    raise ImageFormatError(f"manifest.json: RepoTags: {exc}") from exc
                # OCI ref.name may be a bare tag like "1.0": the image stays untagged.
        return tags or [(str(image_id), image_id)]

    # --- queries ---------------------------------------------------------------------

    def _image_id(self, ref: str) -> tuple[str, Digest]:
        if ref.startswith("sha256:"):
            try:
                image_id = Digest.parse(ref, "image id")
            except DigestError as exc:
                raise InvalidReference(str(exc)) from exc
            if self._config_path(image_id).is_file():
                return str(image_id), image_id
            raise ImageNotFound(f"no such image: {image_id}")
        try:
            canonical = normalize(ref)
        except InvalidReference as exc:
            raise ImageNotFound(f"no such image: {ref[:80]!r}") from exc
        found = self._read_refs().get(canonical)
        if found is None:
            raise ImageNotFound(f"no such image: {ref}")
        return canonical, found

    def has(self, ref: str) -> bool:
        """Whether ``ref`` resolves with every layer recorded (else the agent pulls it)."""
        try:
            self.resolve(ref)
        except (ImageNotFound, InvalidReference, ImageFormatError):
            return False
        return True

    def _config(self, image_id: Digest, ref: str) -> dict[str, Any]:
        try:
            raw = self._config_path(image_id).read_bytes()
        except FileNotFoundError as exc:
            raise ImageNotFound(f"image {ref}: config {image_id} is missing") from exc
        return fmt.obj(fmt.parse_json(raw, f"config of {ref}"), f"config of {ref}")

    def resolve(self, ref: str) -> Image:
        """Return the image for ``ref`` (a name or a ``sha256:`` id) or raise ImageNotFound."""
        canonical, image_id = self._image_id(ref)
        config = self._config(image_id, ref)
        diff_ids = fmt.config_diff_ids(config, f"config of {ref}")
        recorded = self.layers.recorded()
        missing = [d for d in diff_ids if d not in recorded or not self.layers.path(d).is_dir()]
        if missing:
            raise ImageNotFound(f"image {ref}: layer {missing[0]} is not in the store; "
                                "load the image again")
        run = config.get("config")
        run = run if isinstance(run, dict) else {}
        return Image(
            ref=canonical, id=str(image_id), layers=tuple(self.layers.path(d) for d in diff_ids),
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
            self._config_path(image_id).unlink(missing_ok=True)

    def prune(self, in_use: set[Path] | None = None) -> builtins.list[Path]:
        """Remove layer dirs no stored config references and no caller holds; return them."""
        keep: set[Digest] = set()
        for cfg in self.configs_dir.glob("*.json"):
            try:
                image_id = Digest.from_hex(cfg.name.removesuffix(".json"))
                keep.update(fmt.config_diff_ids(self._config(image_id, str(image_id)),
                                                str(cfg)))
            except (DigestError, ImageFormatError, ImageNotFound):
                continue  # not ours: it keeps nothing alive
        return self.layers.prune(keep, set(in_use or ()))

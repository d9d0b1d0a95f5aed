"""The daemons' configuration files: dockerd's daemon.json, one per daemon.

berth-agent reads ``/etc/berth/agent.json`` and berth-controller ``/etc/berth/controller.json``
when the file exists, or the file ``--config PATH`` names (which must exist). agent/config.py
and controller/config.py own their keys (a strict pydantic model each, built on ``FileModel``)
and call ``load`` and ``check_conflicts`` here; docs/config.md lists every key.

Design notes
------------
- Every problem is one line naming the file and the key, and the daemon exits 1
  (berth.daemon maps UserError): ``/etc/berth/agent.json: "max-sise": unknown key``.
  Nothing is ignored: a key berth does not know is refused, as is a key of dockerd's that
  berth does not do yet (``registry-mirrors``: "not supported yet").
- A key given both by flag and in the file is refused, with every such pair named in the
  one line, as dockerd does ("the following directives are specified both as a flag and
  in the configuration file: ..."). Flags tell "given" from "default" by argparse's
  ``default=None``; each daemon applies its defaults after the merge.
- The file is bounded (``MAX_FILE_BYTES``), must be UTF-8 JSON with an object at the top,
  and may not repeat a key (JSON parsers keep the last one silently; an operator editing
  the first would wonder why nothing changes).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from berth.errors import UserError

CONFIG_DIR = Path("/etc/berth")
MAX_FILE_BYTES = 1 << 20
# dockerd's keys berth will honour once the feature behind them exists.
NOT_SUPPORTED_YET = frozenset({"registry-mirrors", "insecure-registries"})
_SIZE = re.compile(r"(?P<number>[0-9]{1,12})(?P<unit>[kmg]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class FileModel(BaseModel):
    """Base of the daemons' file models: strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        """``null`` is not "the default": leave the key out for that."""
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None:
                    raise ValueError(f'"{key}": expected a value, not null')
        return data


class TlsKeys(FileModel):
    """dockerd's TLS keys, which both daemons take (berth.daemonflags has their flags).

    ``tls`` alone (serve TLS without verifying clients) is refused: berth's roles come from
    the client certificate's CN (berth.authz), so a daemon that does not ask for one
    could authorize nobody. ``tlsverify`` implies TLS, as in dockerd.
    """

    tls: bool | None = None
    tlsverify: bool | None = None
    tlscacert: str | None = Field(default=None, min_length=1)
    tlscert: str | None = Field(default=None, min_length=1)
    tlskey: str | None = Field(default=None, min_length=1)


class CommonKeys(TlsKeys):
    """The keys both daemons take beside TLS: where state goes, logging, the listen
    address and the image archive bound."""

    data_root: str | None = Field(default=None, alias="data-root", min_length=1)
    debug: bool | None = None
    log_level: str | None = Field(default=None, alias="log-level")
    hosts: str | None = None
    max_image_archive_size: int | None = Field(default=None, alias="max-image-archive-size")

    @field_validator("data_root")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r}: expected an absolute path")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        return level(value)

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> str:
        return one_host(strings(value, "tcp://HOST:PORT addresses"))

    @field_validator("max_image_archive_size", mode="before")
    @classmethod
    def _archive(cls, value: Any) -> int:
        return size_key(value)


def strings(value: Any, what: str) -> list[str]:
    """``value`` as a list of strings, or a ValueError naming ``what`` was expected."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of {what}")
    return value


TLS_FLAGS = {"tlsverify": "--tlsverify", "tlscacert": "--tlscacert", "tlscert": "--tlscert",
             "tlskey": "--tlskey"}


M = TypeVar("M", bound=FileModel)


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """A validated file, or an empty model when no file was read (``path`` None)."""

    data: M
    path: Path | None

    @property
    def keys(self) -> frozenset[str]:
        """The keys the file set, as spelled in it (``data-root``)."""
        fields = type(self.data).model_fields
        return frozenset(fields[name].alias or name for name in self.data.model_fields_set)

    def where(self, key: str) -> str:
        return f'{self.path}: "{key}"'


def default_path(daemon: str) -> Path:
    return CONFIG_DIR / f"{daemon}.json"


def load(explicit: Path | None, default: Path, model: type[M]) -> Loaded[M]:
    """``explicit`` (``--config``), which must exist, else ``default`` when it exists."""
    if explicit is None:
        if not default.exists():
            return Loaded(model(), None)
        explicit = default
    return Loaded(parse(explicit, _read(explicit), model), explicit)


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the configuration file: "
                        f"{exc.strerror or exc}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not a configuration file")
    return raw


def parse(path: Path, raw: bytes, model: type[M]) -> M:
    """Validate ``raw`` as ``model``; any problem is one UserError line naming ``path``."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    try:
        top = json.loads(text, object_pairs_hook=_no_repeats)
    except _RepeatedKey as exc:
        raise UserError(f'{path}: "{exc.key}": given twice') from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        line = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise UserError(f"{path}: not valid JSON{line}: {detail}") from exc
    if not isinstance(top, dict):
        raise UserError(f"{path}: expected a JSON object ({{...}}) at the top")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise UserError(f"{path}: {describe(exc)}") from exc


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKey(key)
        found[key] = value
    return found


def describe(exc: ValidationError) -> str:
    """The first problem as ``"key": what is wrong``, in words without class names."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        problem = "not supported yet" if key in NOT_SUPPORTED_YET else "unknown key"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        problem = "expected a JSON object"
    elif kind == "missing":
        problem = "required"
    elif kind == "value_error":
        problem = str(error.get("ctx", {}).get("error", error["msg"]))
    else:
        problem = _plain(error["msg"])
    return f'"{key}": {problem}' if key else problem


def _plain(msg: str) -> str:
    msg = msg.replace("Input should be", "expected").replace("a valid ", "")
    return msg[:1].lower() + msg[1:]


def check_conflicts(loaded: Loaded[Any], ns: argparse.Namespace,
                    flags: Mapping[str, str]) -> None:
    """Refuse keys set in the file whose flag (``flags[key]``, e.g. ``--state-dir``) was given.

    A flag counts as given when its value is not None (its argparse default).
    """
    clashes = []
    for key in sorted(loaded.keys & flags.keys()):
        flag = flags[key]
        value = getattr(ns, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            clashes.append(f'"{key}" (flag {flag} {_shown(value)})')
    if clashes:
        raise UserError(f"{loaded.path}: the following directives are specified both as a "
                        f"flag and in the configuration file: {', '.join(clashes)}")


def _shown(value: object) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_size(text: str) -> int:
    """dockerd's sizes: ``"10m"`` is 10 MiB; k, m and g count in 1024s, no unit is bytes."""
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a size (expected a number with k, m or g, "
                         f"such as \"10m\")")
    return int(found["number"]) * _UNITS[found["unit"].lower()]


def parse_host(text: str) -> str:
    """A ``hosts`` entry: ``tcp://HOST:PORT`` (berth listens on TCP only) to ``HOST:PORT``."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme != "tcp":
        raise ValueError(f"{text!r}: berth listens on TCP only (tcp://HOST:PORT)")
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected tcp://HOST:PORT")
    return rest


def one_host(hosts: list[str]) -> str:
    """berth serves its API on one address: a ``hosts`` list of exactly one."""
    if len(hosts) != 1:
        raise ValueError(f"berth listens on one address; got {len(hosts)} "
                         f"(give one tcp://HOST:PORT)")
    return parse_host(hosts[0])


def level(value: str) -> str:
    """dockerd's ``log-level`` words to Python's level names."""
    if value.lower() not in ("debug", "info", "warn", "warning", "error"):
        raise ValueError(f"{value!r}: expected one of debug, info, warn, error")
    return {"warn": "WARNING"}.get(value.lower(), value.upper())


def size_key(value: Any) -> int:
    """A size bound given as dockerd gives sizes (``"8g"``); at least 1 MiB."""
    if not isinstance(value, str):
        raise ValueError('expected a string such as "8g"')
    size = parse_size(value)
    if size < 1 << 20:
        raise ValueError(f"{value!r}: expected at least 1m")
    return size


def apply_tls(loaded: Loaded[Any], ns: argparse.Namespace) -> None:
    """Put the file's TLS keys into ``ns`` where no flag gave them, checked in the file's words.

    Call after ``check_conflicts`` and before berth.daemonflags.common, which builds the
    TLS settings from ``ns`` (flags given on the command line keep their own checks).
    """
    data = loaded.data
    if not isinstance(data, TlsKeys):
        return
    if data.tls and data.tlsverify is not True and not ns.tlsverify:
        raise UserError(f'{loaded.where("tls")}: true without "tlsverify": berth\'s roles '
                        f'come from client certificates, so set "tlsverify": true')
    if data.tls is False and (data.tlsverify or ns.tlsverify):
        raise UserError(f'{loaded.where("tls")}: false, but "tlsverify" (or --tlsverify) '
                        f"asks for TLS")
    verify = ns.tlsverify if ns.tlsverify is not None else data.tlsverify
    for key in ("tlscacert", "tlscert", "tlskey"):
        value = getattr(data, key)
        if value is None:
            continue
        if not verify:
            raise UserError(f'{loaded.where(key)}: given without "tlsverify": true (berth '
                            f"serves mTLS or plaintext, nothing between)")
        if not Path(value).is_file():
            raise UserError(f"{loaded.where(key)}: {value}: no such file")
        setattr(ns, key, value)
    if data.tlsverify is not None and ns.tlsverify is None:
        ns.tlsverify = data.tlsverify
    if ns.tlsverify:
        missing = [key for key in ("tlscacert", "tlscert", "tlskey") if getattr(ns, key) is None]
        if missing and data.tlsverify:
            raise UserError(f'{loaded.where("tlsverify")}: true needs '
                            f"{', '.join(repr(k) for k in missing)} (or their flags)")

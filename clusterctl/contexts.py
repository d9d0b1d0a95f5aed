"""clusterctl's contexts: which cluster to talk to and with which certificate (kubeconfig-like).

The file is YAML, named by ``BERTH_CONFIG`` (default ``~/.config/berth/config``)::

    current-context: lab
    contexts:
      - {name: lab, server: 10.77.0.2:7070, ca: .../ca.crt, cert: .../admin.crt, key: ...}

A context without ca/cert/key speaks plaintext (a controller started without
--tlsverify). Choice: ``--context``, then ``BERTH_CONTEXT``, then current-context. A bare
``--controller ADDR`` (or ``BERTH_CONTROLLER``) with no context named dials ADDR in
plaintext; with a context named it replaces that context's server. Called by
clusterctl.client (resolve), clusterctl.config_cli (the verbs) and clusterctl.lab
(``lab up`` adds its context, ``lab down`` removes it). Writes are atomic (temporary
file, rename, mode 0600) under a lock, so two ``lab up`` runs never lose a context.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from berth.errors import UserError
from berth.tls import TlsSettings

CONFIG_ENV = "BERTH_CONFIG"
CONTEXT_ENV = "BERTH_CONTEXT"
CONTROLLER_ENV = "BERTH_CONTROLLER"
MAX_BYTES = 1 << 20
NO_CLUSTER = ("no cluster selected: run `clusterctl lab up` or "
              "`clusterctl config use-context NAME`")


class ContextEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    name: str = Field(min_length=1, max_length=253)
    server: str = Field(min_length=1, max_length=300)
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def tls(self) -> TlsSettings | None:
        if self.ca is None and self.cert is None and self.key is None:
            return None
        if not (self.ca and self.cert and self.key):
            raise UserError(f"context {self.name}: ca, cert and key go together")
        return TlsSettings(self.ca, self.cert, self.key)


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    current_context: str | None = Field(default=None, alias="current-context")
    contexts: list[ContextEntry] = Field(default_factory=list)

    def find(self, name: str) -> ContextEntry | None:
        return next((c for c in self.contexts if c.name == name), None)


@dataclass(frozen=True)
class Target:
    """Where clusterctl dials, and as whom (None: plaintext)."""

    address: str
    tls: TlsSettings | None
    context: str | None


def config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else Path.home() / ".config" / "berth" / "config"


def load(path: Path | None = None) -> ConfigFile:
    path = path or config_path()
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return ConfigFile()
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BYTES:
        raise UserError(f"{path}: larger than {MAX_BYTES >> 20} MiB; not a clusterctl config")
    try:
        doc = yaml.safe_load(raw) if raw.strip() else {}
        return ConfigFile.model_validate(doc or {})
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{path}: {where}: {err['msg']}") from exc


def _save(path: Path, cfg: ConfigFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = cfg.model_dump(by_alias=True, exclude_none=True)
    data = yaml.safe_dump(doc, sort_keys=False).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.with_name(f".{path.name}.lock"), "w") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def update(change: Callable[[ConfigFile], None], path: Path | None = None) -> ConfigFile:
    """Load, ``change`` in place, and save atomically, all under the file's lock."""
    path = path or config_path()
    with _locked(path):
        cfg = load(path)
        change(cfg)
        _save(path, cfg)
    return cfg


def add(entry: ContextEntry, *, select_if_none: bool = True) -> bool:
    """Add or replace ``entry``; select it when no context is selected. True if selected."""
    selected = [False]

    def change(cfg: ConfigFile) -> None:
        cfg.contexts = [c for c in cfg.contexts if c.name != entry.name] + [entry]
        current = cfg.current_context
        if select_if_none and (current is None or cfg.find(current) is None):
            cfg.current_context = entry.name
        selected[0] = cfg.current_context == entry.name

    update(change)
    return selected[0]


def remove(name: str) -> None:
    """Drop context ``name``; clear current-context if it was that one. Absent: no-op."""
    path = config_path()
    if not path.exists():
        return

    def change(cfg: ConfigFile) -> None:
        cfg.contexts = [c for c in cfg.contexts if c.name != name]
        if cfg.current_context == name:
            cfg.current_context = None

    update(change, path)


def use(name: str) -> None:
    def change(cfg: ConfigFile) -> None:
        if cfg.find(name) is None:
            known = ", ".join(c.name for c in cfg.contexts) or "none"
            raise UserError(f"no context {name!r} in {config_path()} (known: {known})")
        cfg.current_context = name

    update(change)


def resolve(context_flag: str | None, controller_flag: str | None) -> Target:
    """The cluster this invocation means: see the module docstring for the order."""
    name = context_flag or os.environ.get(CONTEXT_ENV) or None
    address = controller_flag or os.environ.get(CONTROLLER_ENV) or None
    if name is None and address is not None:
        return Target(address, None, None)
    cfg = load()
    if name is None:
        name = cfg.current_context
        if name is None:
            raise UserError(NO_CLUSTER)
    entry = cfg.find(name)
    if entry is None:
        raise UserError(f"context {name!r} not found in {config_path()}; see "
                        "`clusterctl config get-contexts`")
    return Target(address or entry.server, entry.tls(), entry.name)

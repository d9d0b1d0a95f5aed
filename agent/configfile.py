"""The keys of ``/etc/berth/agent.json``: dockerd's daemon.json where a key means something here.

agent/config.py validates the file with ``AgentFile`` (berth.daemonconfig reads it) and
merges it with the flags; docs/config.md lists each key with its flag, default and effect.
Values are checked here, where they enter, so a bad one is one line naming the key.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from berth import daemonconfig
from berth.daemonconfig import CommonKeys, strings
from berth.manifest_network import MAX_MTU, MIN_MTU

# Docker's label keys: reverse-DNS-ish words; values are any text but a newline.
_LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?")
MAX_LABELS = 64
MIN_LOG_SIZE = 4096      # agent.runtime.logrotate.LogLimits' own lower bound
MAX_LABEL_VALUE = 256


class Runtime(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    path: str = Field(min_length=1)


class LogOpts(BaseModel):
    """dockerd's ``log-opts`` for its ``local``/``json-file`` drivers: strings, as there."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)
    max_size: int | None = Field(default=None, alias="max-size")
    max_file: int | None = Field(default=None, alias="max-file")

    @field_validator("max_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        if not isinstance(value, str):
            raise ValueError('expected a string such as "10m"')
        size = daemonconfig.parse_size(value)
        if size < MIN_LOG_SIZE:
            raise ValueError(f"{value!r}: expected at least 4k")
        return size

    @field_validator("max_file", mode="before")
    @classmethod
    def _files(cls, value: Any) -> int:
        if not isinstance(value, str) or not value.isdigit() or not 1 <= int(value) <= 1000:
            raise ValueError('expected a string with a number of files from 1 to 1000, '
                             'such as "3"')
        return int(value)



def parse_labels(items: list[str]) -> dict[str, str]:
    """dockerd's ``["k=v", ...]`` node labels; a key given twice with two values is refused."""
    if len(items) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.fullmatch(key):
            raise ValueError(f"{item!r}: expected key=value with a key of letters, digits "
                             f"and . _ / -")
        if len(value) > MAX_LABEL_VALUE or "\n" in value:
            raise ValueError(f"{item!r}: the value is longer than {MAX_LABEL_VALUE} "
                             f"characters or has a newline")
        if labels.get(key, value) != value:
            raise ValueError(f"label {key!r} is given twice with different values")
        labels[key] = value
    return labels


def parse_ips(items: list[str]) -> tuple[str, ...]:
    for ip in items:
        try:
            ipaddress.ip_address(ip)
        except ValueError as exc:
            raise ValueError(f"{ip!r} is not an IP address") from exc
    return tuple(items)


class AgentFile(CommonKeys):
    """Every key the agent honours; anything else is refused (berth.daemonconfig)."""

    live_restore: bool | None = Field(default=None, alias="live-restore")
    log_opts: LogOpts | None = Field(default=None, alias="log-opts")
    default_runtime: str | None = Field(default=None, alias="default-runtime", min_length=1)
    runtimes: dict[str, Runtime] = Field(default_factory=dict)
    dns: tuple[str, ...] | None = None
    mtu: int | None = Field(default=None, ge=MIN_MTU, le=MAX_MTU)
    bip: str | None = Field(default=None, min_length=1)
    gwbridge_bip: str | None = Field(default=None, alias="gwbridge-bip", min_length=1)
    labels: dict[str, str] | None = None

    @field_validator("dns", mode="before")
    @classmethod
    def _dns(cls, value: Any) -> tuple[str, ...]:
        return parse_ips(strings(value, "IP addresses"))

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> dict[str, str]:
        return parse_labels(strings(value, '"key=value" labels'))


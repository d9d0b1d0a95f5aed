"""Fixtures for end-to-end tests: a real lab brought up and torn down with clusterctl."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from berth.etcd import Etcd3Client

BIN = Path(sys.executable).parent


@dataclass
class Lab:
    name: str
    info: dict[str, Any]

    @property
    def controller(self) -> str:
        return str(self.info["controller"])

    def env(self) -> dict[str, str]:
        """clusterctl's environment: this lab's context (``lab up`` added it), over mTLS."""
        env = {k: v for k, v in os.environ.items() if k != "BERTH_CONTROLLER"}
        return {**env, "BERTH_CONTEXT": self.name}

    def etcd(self, stem: str = "admin") -> Etcd3Client:
        """A client of the lab's etcd with certificate ``stem`` of the lab's PKI."""
        pki = Path(str(self.info["pki"]))
        return Etcd3Client(str(self.info["etcd"]), ca_cert=str(pki / "ca.crt"),
                           cert_cert=str(pki / f"{stem}.crt"), cert_key=str(pki / f"{stem}.key"))

    def ctl(
        self, *args: str, check: bool = True, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(BIN / "clusterctl"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"clusterctl {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def containers(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self.ctl("get", "containers", "-o", "json").stdout)
        return {r["name"]: r for r in rows}

    def refresh(self) -> None:
        self.info = lab_status(self.name)


def lab_status(name: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(BIN / "clusterctl"), "lab", "status", "--name", name, "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (info,) = json.loads(out)
    return dict(info)


def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def lab_factory() -> Iterator[Callable[[int], Lab]]:
    from clusterctl import lab as labmod

    made: list[str] = []

    def make(hosts: int) -> Lab:
        name = "e2e" + secrets.token_hex(2)
        made.append(name)
        subprocess.run(
            [str(BIN / "clusterctl"), "lab", "up", "--name", name, "--hosts", str(hosts)],
            check=True,
            timeout=300,
        )
        return Lab(name, lab_status(name))

    yield make
    for name in made:
        subprocess.run(
            [str(BIN / "clusterctl"), "lab", "down", "--name", name], check=False, timeout=300
        )
        assert labmod.leftovers(name) == []

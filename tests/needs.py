"""What root-level tests need from the machine, checked so that a gap FAILS the test.

scripts/install.sh installs every tool the suite uses; a test that skipped when one
was missing would turn a broken install into a green run. Each check fails with one
line saying what to install.
"""

from __future__ import annotations

import os
import shutil

import pytest


def tool(name: str, package: str) -> str:
    """The path of ``name``; fail the test if scripts/install.sh did not provide it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: scripts/install.sh installs the Debian "
                    f"package {package}", pytrace=False)
    return path


def root() -> None:
    """Fail the test unless it runs as root (namespaces, mounts, cgroups)."""
    if os.geteuid() != 0:
        pytest.fail("needs root: run the suite as root (sh scripts/test.sh)", pytrace=False)

"""Every error class is drawn in its package's errors.py tree (httpx's _exceptions.py)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each tree and the packages whose error classes it must draw.
TREES = {
    "berth/errors.py": ["berth"],
    "controller/errors.py": ["controller"],
    "agent/errors.py": ["agent"],
    "agent/runtime/errors.py": ["agent.runtime"],
    "agent/dns/errors.py": ["agent.dns"],
    "netplugins/errors.py": ["netplugins"],
    "clusterctl/lab/errors.py": ["clusterctl.lab"],
}
# Sub-packages with a tree of their own are checked there, not in the parent's.
OWN_TREE = {"agent.runtime", "agent.dns", "clusterctl.lab"}


def _error_classes(package: str) -> set[str]:
    found: set[str] = set()
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
        if any(info.name.startswith(f"{own}.") or info.name == own
               for own in OWN_TREE if own != package):
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Exception) and cls.__module__ == info.name:
                found.add(name)
    return found


@pytest.mark.parametrize("tree", list(TREES), ids=list(TREES))
def test_every_error_class_is_in_its_tree(tree: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / tree).read_text())) or ""
    classes = set().union(*(_error_classes(p) for p in TREES[tree]))
    # A YAML budget error is yaml's own kind (a MarkedYAMLError), turned into a
    # ManifestError before it leaves berth.manifest.
    classes.discard("BudgetError")
    classes = {c for c in classes if not c.startswith("_")}   # private control flow
    assert classes, tree
    assert sorted(c for c in classes if c not in doc) == []

"""Property-based fuzzing of berth.manifest.load_manifest with hypothesis.

Inputs: random text, YAML-shaped token soup (anchors, aliases, tags, brackets, merge
keys), random JSON, and mutations of valid manifests (examples/hello.yaml and this
suite's own), both as text edits and as structural edits of the parsed documents.

Properties: load_manifest returns documents or raises ManifestError and nothing else; the
message is one line naming the file, without a traceback or a Python class name.

Budget: BERTH_FUZZ_EXAMPLES per test (300 in CI); derandomized so CI is steady. A long
run: ``BERTH_FUZZ_EXAMPLES=5000 pytest tests/unit/berth/test_manifest_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.errors import ManifestError
from berth.manifest import load_manifest
from tests.manifests import FULL, NETWORKING

EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ROOT = Path(__file__).resolve().parents[3]
SEEDS = [(ROOT / "examples" / "hello.yaml").read_text(), FULL, NETWORKING]
# Python's own exception names must never reach a user.
CLASS_NAMES = re.compile(
    r"Traceback|<class|\b(ValueError|TypeError|KeyError|IndexError|AttributeError|"
    r"RecursionError|OverflowError|MemoryError|ValidationError|YAMLError|ComposerError|"
    r"ScannerError|ParserError|ConstructorError|BudgetError|UnicodeError|AssertionError)\b")

TOKENS = [
    "a", "b", "apiVersion", "kind", "Service", "Network", "metadata", "name", "spec",
    "replicas", "image", "env", "command", "networks", "subnet", "<<", "berth/v1",
    "ports", "network_mode", "options", "parent", "driver", "macvlan", "bridge", "host",
    "container:", "service:", "8080:80", "/udp", "::", "[::1]", "65536", "ingress",
    ": ", ":", "- ", "-", "\n", "  ", "    ", "[", "]", "{", "}", ", ", "&a ", "*a", "&b ",
    "*b", "!!str ", "!!int ", "!!binary ", "!!set ", "!!timestamp ", "!!python/object ",
    "!foo ", "? ", "|", ">", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "0x1F", "1e9",
    "99999999999999999999", "-1", "1:30:00", "2001-02-30", "null", "~", "true", ".inf",
    ".nan", "0.0.0.0/0", "10.0.0.0/8", "\t", "\\", "\x00", "\ufeff", "é", "\u2028",
]


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    return st.recursive(leaves, lambda inner: st.lists(inner) | st.dictionaries(
        st.text(), inner), max_leaves=40)


def _check(text: str) -> None:
    try:
        load_manifest("fuzz.yaml", text)
    except ManifestError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message
        assert message.startswith("fuzz.yaml: "), message
        assert not CLASS_NAMES.search(message), message


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    _check(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=80).map("".join))
def test_yaml_token_soup(text: str) -> None:
    _check(text)


@FUZZ
@given(_json_values())
def test_random_json(value: Any) -> None:
    _check(json.dumps(value))


@FUZZ
@given(st.sampled_from(SEEDS), st.data())
def test_text_mutations_of_valid_manifests(seed: str, data: st.DataObject) -> None:
    text = seed
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        insert = data.draw(st.sampled_from(TOKENS) | st.text(max_size=4))
        text = text[:at] + insert + text[at + cut:]
    _check(text)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


@FUZZ
@given(st.sampled_from(SEEDS), st.data())
def test_structural_mutations_of_valid_manifests(seed: str, data: st.DataObject) -> None:
    docs = list(yaml.safe_load_all(seed))
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(docs) - 1))
        path = data.draw(st.sampled_from(_paths(docs[index])))
        replacement = data.draw(_json_values() | st.integers(min_value=-(10**12),
                                                             max_value=10**12))
        if not path:
            docs[index] = replacement
            continue
        parent = docs[index]
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = replacement
    _check(yaml.safe_dump_all(docs))

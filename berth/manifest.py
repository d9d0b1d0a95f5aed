"""Manifest v1: loading multi-document YAML into validated documents, with one-line errors.

Called by the controller (Apply/Delete validate every request) and by clusterctl
(client-side checks and ``manifest_json_schema`` for editors). The models live
in ``manifest_model.py`` and are re-exported here: import from ``berth.manifest``.

Every error is one line ``FILE: DOCREF: PATH: message``, where DOCREF is
``Kind/name`` when the document says who it is and ``document N`` otherwise,
and PATH follows pydantic's location (``spec.networks[0]``).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from berth.errors import ManifestError
from berth.manifest_model import (
    API_VERSION,
    DNS_LABEL,
    DOCUMENT_TYPES,
    KINDS,
    Document,
    Metadata,
    NetworkDocument,
    NetworkSpec,
    Placement,
    ServiceDocument,
    ServiceNetwork,
    ServiceSpec,
)

__all__ = [
    "API_VERSION",
    "DNS_LABEL",
    "DOCUMENT_TYPES",
    "KINDS",
    "Document",
    "Metadata",
    "NetworkDocument",
    "NetworkSpec",
    "Placement",
    "ServiceDocument",
    "ServiceNetwork",
    "ServiceSpec",
    "load_manifest",
    "manifest_json_schema",
    "parse_document",
]

_MODELS: tuple[type[BaseModel], ...] = (
    NetworkDocument, ServiceDocument, Metadata, NetworkSpec, ServiceSpec, ServiceNetwork, Placement,
)


def load_manifest(source: str, text: str) -> list[Document]:
    """Parse and validate every document of a multi-document YAML manifest.

    Empty documents are skipped. Raises ManifestError (one line) on the first
    problem; nothing is returned unless the whole file is valid.
    """
    try:
        raws = [raw for raw in yaml.safe_load_all(text) if raw is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: {_yaml_problem(exc)}") from exc
    if not raws:
        raise ManifestError(f"{source}: no documents in file")
    docs: list[Document] = []
    seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(raws, start=1):
        doc = _validate(source, number, raw)
        first = seen.setdefault((doc.kind, doc.name), number)
        if first != number:
            raise ManifestError(
                f"{source}: {doc.kind}/{doc.name}: metadata.name: duplicate: "
                f"{doc.kind}/{doc.name} is defined by documents {first} and {number}")
        docs.append(doc)
    return docs


def parse_document(kind: str, raw: bytes | str) -> Document:
    """Re-read a document the controller stored in etcd (already validated once)."""
    try:
        model = DOCUMENT_TYPES[kind]
    except KeyError as exc:
        raise ManifestError(f"stored document: kind: unknown kind {kind!r}") from exc
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ManifestError(f"stored {kind}: {_describe(exc.errors()[0])}") from exc


def manifest_json_schema() -> dict[str, Any]:
    """JSON Schema of one manifest document (either kind), for editors and docs."""
    adapter: TypeAdapter[Document] = TypeAdapter(
        Annotated[NetworkDocument | ServiceDocument, Field(discriminator="kind")])
    schema = adapter.json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"berth manifest document ({API_VERSION})", **schema}


def _validate(source: str, number: int, raw: object) -> Document:
    where = f"{source}: document {number}"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a mapping with apiVersion, kind, metadata "
                            f"and spec, got {_type_name(raw)}")
    kind = raw.get("kind")
    if kind is None:
        raise ManifestError(f"{where}: kind: required field is missing "
                            f"(expected {' or '.join(KINDS)})")
    if not isinstance(kind, str) or kind not in DOCUMENT_TYPES:
        shown = f'"{kind}"' if isinstance(kind, str) else _type_name(kind)
        raise ManifestError(f"{where}: kind: unknown kind {shown} "
                            f"(expected {' or '.join(KINDS)})")
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(name, str) and name:
        where = f"{source}: {kind}/{name}"
    version = raw.get("apiVersion")
    if version != API_VERSION:
        problem = ("required field is missing" if version is None
                   else f"unsupported apiVersion {_show(version)}")
        raise ManifestError(f"{where}: apiVersion: {problem} (expected {API_VERSION})")
    try:
        return DOCUMENT_TYPES[kind].model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestError(f"{where}: {_describe(errors[0])}{more}") from exc


def _describe(error: ErrorDetails) -> str:
    """``PATH: message`` for one pydantic error, in the words of a YAML author."""
    path = _path(error["loc"])
    kind = error["type"]
    value = error["input"]
    if kind == "extra_forbidden":
        message = "unknown field" + _suggest(str(error["loc"][-1]))
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "string_pattern_mismatch":
        message = (f"invalid name {_show(value)}: must be a DNS label (lower-case letters, "
                   "digits and '-', at most 63 characters)")
    elif kind.endswith("_type") and kind not in ("union_tag_invalid",):
        expected = error["msg"].removeprefix("Input should be ").removeprefix("a valid ")
        expected = {"dictionary": "mapping", "array": "list"}.get(expected, expected)
        message = f"wrong type: expected {expected}, got {_type_name(value)} {_show(value)}"
    else:
        message = error["msg"]
    return f"{path}: {message}" if path else message


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("<"):
            continue    # a union tag such as "<list>", not a place in the file
        else:
            out += f".{part}" if out else part
    return out


def _suggest(field: str) -> str:
    known = {name for model in _MODELS for name in model.model_fields}
    known |= {"apiVersion"}
    close = difflib.get_close_matches(field, sorted(known), n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _type_name(value: object) -> str:
    names = {str: "string", bool: "boolean", int: "integer", float: "number",
             list: "list", dict: "mapping", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"

"""Manifest v1: loading multi-document YAML into validated documents, with one-line errors.

Called by the controller (Apply/Delete validate every request) and by clusterctl
(client-side checks and ``manifest_json_schema`` for editors). The models live
in ``manifest_model.py`` and are re-exported here: import from ``berth.manifest``.

Every error is one line ``FILE: DOCREF: PATH: message``, where DOCREF is
``Kind/name`` when the document says who it is and ``document N`` otherwise,
and PATH follows pydantic's location (``spec.networks[0]``).

Bounds: the text is at most ``MAX_MANIFEST_BYTES`` and is parsed by berth.yamlsafe, whose
budget caps nesting depth and alias expansion, so a hostile file costs bounded work and
fails with ``FILE: line L, column C: ...``. Replica counts and name lengths are checked
against the controller's configured ``Limits`` (berth.limits).
"""

from __future__ import annotations

import datetime
import difflib
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from berth import yamlsafe
from berth.errors import ManifestError
from berth.limits import DEFAULT_LIMITS, Limits
from berth.manifest_model import (
    API_VERSION,
    DEFAULT_NETWORK,
    DNS_LABEL,
    DOCUMENT_TYPES,
    GATEWAY_NETWORK,
    KINDS,
    Document,
    Metadata,
    NetworkDocument,
    NetworkSpec,
    Placement,
    ServiceDocument,
    ServiceNetwork,
    ServicePort,
    ServiceSpec,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_NETWORK",
    "DNS_LABEL",
    "DOCUMENT_TYPES",
    "GATEWAY_NETWORK",
    "KINDS",
    "MAX_MANIFEST_BYTES",
    "Document",
    "Metadata",
    "NetworkDocument",
    "NetworkSpec",
    "Placement",
    "ServiceDocument",
    "ServiceNetwork",
    "ServicePort",
    "ServiceSpec",
    "check_size",
    "load_manifest",
    "manifest_json_schema",
    "parse_document",
]

MAX_MANIFEST_BYTES = yamlsafe.MAX_MANIFEST_BYTES

_MODELS: tuple[type[BaseModel], ...] = (
    NetworkDocument, ServiceDocument, Metadata, NetworkSpec, ServiceSpec, ServiceNetwork, Placement,
    ServicePort,
)


def check_size(source: str, size: int) -> None:
    """Refuse a manifest of ``size`` bytes over MAX_MANIFEST_BYTES (clusterctl and controller)."""
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{_one_line(source)}: manifest is {size} bytes, more than the "
                            f"limit of {MAX_MANIFEST_BYTES} bytes (1 MiB); split it into "
                            "several files")


def load_manifest(
    source: str, text: str, limits: Limits | None = DEFAULT_LIMITS
) -> list[Document]:
    """Parse and validate every document of a multi-document YAML manifest.

    Empty documents are skipped. ``limits=None`` skips the replica and name limits
    (``delete -f``); the size and YAML bounds always apply. Raises ManifestError (one
    line) on the first problem; nothing is returned unless the whole file is valid.
    """
    source = _one_line(source)
    try:
        return _load(source, text, limits)
    except ManifestError as exc:
        message = str(exc)
        if "\n" in message or "\r" in message:
            raise ManifestError(_one_line(message)) from exc
        raise


def _load(source: str, text: str, limits: Limits | None) -> list[Document]:
    check_size(source, len(text) if len(text) > MAX_MANIFEST_BYTES else len(text.encode()))
    try:
        raws = [raw for raw in yamlsafe.load_all(text) if raw is not None]
    except yamlsafe.BudgetError as exc:
        raise ManifestError(f"{source}: {_budget_problem(exc)}") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: {_yaml_problem(exc)}") from exc
    if not raws:
        raise ManifestError(f"{source}: no documents in file")
    docs: list[Document] = []
    seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(raws, start=1):
        doc = _validate(source, number, raw)
        if limits is not None:
            _check_limits(source, doc, limits)
        first = seen.setdefault((doc.kind, doc.name), number)
        if first != number:
            raise ManifestError(
                f"{source}: {doc.kind}/{doc.name}: metadata.name: duplicate: "
                f"{doc.kind}/{doc.name} is defined by documents {first} and {number}")
        docs.append(doc)
    return docs


# Where an operator raises the bound: the controller's flag, or its configuration file.
_SET_BY = '(berth-controller --max-replicas, or "max-replicas" in controller.json)'


def _check_limits(source: str, doc: Document, limits: Limits) -> None:
    if not isinstance(doc, ServiceDocument):
        return
    where = f"{source}: Service/{doc.name}"
    if doc.spec.replicas > limits.max_replicas:
        raise ManifestError(
            f"{where}: spec.replicas: {_show(doc.spec.replicas)} is more than the maximum of "
            f"{limits.max_replicas} replicas per service {_SET_BY}")
    if len(doc.name) > limits.max_service_name:
        raise ManifestError(
            f"{where}: metadata.name: a service name is at most {limits.max_service_name} "
            f"characters (got {len(doc.name)}): its container names <name>-<replica> must "
            f"fit in 63 characters with up to {limits.max_replicas} replicas {_SET_BY}")


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
    below = (error.get("ctx") or {}).get("at")
    if isinstance(below, str) and below:
        # A validator's finding about a part of its field (berth.manifest_base.at).
        path += below if below.startswith("[") or not path else f".{below}"
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
        message = f"wrong type: expected {expected}, got {_got(value)}"
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
             list: "list", dict: "mapping", type(None): "null", bytes: "binary",
             set: "set", datetime.date: "date", datetime.datetime: "timestamp"}
    return names.get(type(value), "value")


def _show(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a very large integer"   # repr() refuses ints of more than 4300 digits
    if isinstance(value, list | dict | set | tuple):
        return _type_name(value)        # a repr could expand shared (aliased) data
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _got(value: object) -> str:
    name, shown = _type_name(value), _show(value)
    return name if shown == name else f"{name} {shown}"


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _budget_problem(exc: yamlsafe.BudgetError) -> str:
    mark = exc.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{exc.problem} (a manifest's limit; see docs/limits.md)"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"

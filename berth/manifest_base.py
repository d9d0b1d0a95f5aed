"""Building blocks the manifest models share: the strict base model, DNS labels, and the
"not supported yet" and sub-location helpers.

Imported by manifest_model.py, manifest_network.py and manifest_ports.py only; callers
import from ``berth.manifest``.

``at(...)`` errors carry a sub-location in their context (key ``at``): berth.manifest
appends it to pydantic's location, so a check that a validator of ``spec.options`` makes
about the key ``parent`` reads ``spec.options.parent: ...``, and a check of one item of
``spec.ports`` reads ``spec.ports[1]: ...``. Pydantic itself cannot point below the field
that a validator runs on.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL)]

Unsupported = SkipJsonSchema[object]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def not_supported(value: object) -> object:
    if value is not None:
        raise PydanticCustomError("not_supported", "not supported yet")
    return value


def hidden() -> Any:
    """A declared but unimplemented field: refused when set, never in the schema or JSON."""
    return Field(default=None, exclude=True)


def at(where: str, kind: str, message: str, **context: object) -> PydanticCustomError:
    """An error located ``where`` below the field being validated (``"parent"``, ``"[1]"``)."""
    return PydanticCustomError(kind, message, {**context, "at": where})


def show(value: object) -> str:
    """A short, quoted rendering of a user's value for a message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a very large integer"   # repr() refuses ints of more than 4300 digits
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

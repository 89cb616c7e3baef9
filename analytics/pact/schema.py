"""Validation against the PACT data model: the v3.0 and v2.3 OpenAPI component schemas, shipped as JSON Schema.

``schemas/pact-v3.0.schema.json`` and ``pact-v2.3.schema.json`` are the ``components.schemas``
of the PACT Technical Specifications OpenAPI files (3.0.4 and 2.3.3), descriptions removed.
Formats are checked (``uuid``, ``date-time``, ``uri``, ``urn``, and PACT's ``decimal`` for numbers
written as strings in v3), so a footprint that passes here passes the conformance service's
schema checks.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jsonschema import Draft202012Validator, FormatChecker

from carbonedge.errors import CarbonEdgeError

_DIR = Path(__file__).parent / "schemas"
_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


class PactError(CarbonEdgeError):
    """A PACT footprint, event or exchange that cannot be used as it is."""

    code = "pact"


def _checker() -> FormatChecker:
    fc = FormatChecker(formats=())

    @fc.checks("decimal")
    def _dec(v: object) -> bool:
        return not isinstance(v, str) or bool(_DECIMAL.match(v))

    @fc.checks("uuid", raises=ValueError)
    def _uuid(v: object) -> bool:
        if isinstance(v, str):
            uuid.UUID(v)
            if len(v) != 36:
                raise ValueError("not in 8-4-4-4-12 form")
        return True

    @fc.checks("date-time", raises=ValueError)
    def _dt(v: object) -> bool:
        if isinstance(v, str):
            parse_datetime(v)
        return True

    @fc.checks("uri")
    def _uri(v: object) -> bool:
        return not isinstance(v, str) or bool(urlparse(v).scheme)

    @fc.checks("urn")
    def _urn(v: object) -> bool:
        return not isinstance(v, str) or v.lower().startswith("urn:")

    return fc


def parse_datetime(text: str) -> datetime:
    """RFC 3339 date-time with a zone (``Z`` or an offset); a naive time is refused."""
    if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$", text):
        raise ValueError(f"not an RFC 3339 date-time with a time zone: {text!r}")
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


@lru_cache(maxsize=4)
def _defs(version: str) -> dict[str, Any]:
    return json.loads((_DIR / f"pact-v{version}.schema.json").read_text())


@lru_cache(maxsize=32)
def validator(version: str, name: str) -> Draft202012Validator:
    """Validator of one component (``ProductFootprint``, ``PublishedEvent``, ...) of PACT ``version`` ("3.0" or "2.3")."""
    doc = _defs(version)
    schema = {"$schema": doc["$schema"], "$defs": doc["$defs"], "$ref": f"#/$defs/{name}"}
    return Draft202012Validator(schema, format_checker=_checker())


def errors(doc: Any, name: str = "ProductFootprint", version: str = "3.0") -> list[str]:
    """Every schema violation of ``doc`` as ``path: message`` (empty when valid)."""
    out = []
    for e in sorted(validator(version, name).iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        out.append(f"{where}: {e.message}")
    return out


def check(doc: Any, name: str = "ProductFootprint", version: str = "3.0") -> None:
    """Raise :class:`PactError` naming the first problems when ``doc`` is not a valid PACT ``name``."""
    errs = errors(doc, name, version)
    if errs:
        more = f" (and {len(errs) - 3} more)" if len(errs) > 3 else ""
        raise PactError(f"not a valid PACT v{version} {name}: " + "; ".join(errs[:3]) + more)

"""The monitor's state as plain JSON: versioned, checksummed, validated before use, written atomically, mode 0600.

Every check of the monitor turns what it learned and what it is tracking into JSON-able values
(``to_state``) and rebuilds itself from them (``from_state``), reading every value through the
validators here, so a state file that was edited, truncated or written by another version is
refused with one line naming what is wrong, never half-loaded. Nothing is ever unpickled: a state
file in the old pickle format is recognised by its first byte and refused.

File layout (one JSON object)::

    {"format": "carbonedge-monitor-state", "version": 2, "sha256": "<hex of the body>", "body": {...}}

``sha256`` is the SHA-256 of the body serialised canonically (sorted keys, no spaces). It catches a
file damaged on disk or edited by hand; it is not a signature (whoever can write the file can
recompute it), which is why the file is private to its owner (0600) and the body is validated
field by field as well.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carbonedge.files import atomic_write
from carbonedge.errors import CarbonEdgeError

FORMAT = "carbonedge-monitor-state"
VERSION = 2


class MonitorStateError(CarbonEdgeError):
    """The state file cannot be used (other site, other plant model, other version, damaged or invalid)."""

    code = "analytics.monitor_state"


class StateInvalid(ValueError):
    """A value in a state document is not what it must be (``where``: its path in the document)."""


# --------------------------------------------------------------------------- floats that JSON cannot carry


def enc(x: float | None) -> float | str | None:
    """A float as JSON carries it: NaN and ±infinity as the strings ``NaN``/``Infinity``/``-Infinity``."""
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# --------------------------------------------------------------------------- validators


def num(v: Any, where: str, *, finite: bool = False, lo: float | None = None) -> float:
    """A number (int or float, or one of the non-finite strings of :func:`enc`)."""
    if isinstance(v, bool):
        raise StateInvalid(f"{where}: a number is needed, not {v!r}")
    if isinstance(v, int | float):
        x = float(v)
    elif isinstance(v, str) and v in _NONFINITE:
        x = _NONFINITE[v]
    else:
        raise StateInvalid(f"{where}: a number is needed, not {_show(v)}")
    if finite and not math.isfinite(x):
        raise StateInvalid(f"{where}: a finite number is needed, not {v!r}")
    if lo is not None and not x >= lo:
        raise StateInvalid(f"{where}: must be at least {lo:g}, not {v!r}")
    return x


def opt_num(v: Any, where: str, **kw: Any) -> float | None:
    return None if v is None else num(v, where, **kw)


def integer(v: Any, where: str, *, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise StateInvalid(f"{where}: an integer is needed, not {_show(v)}")
    if lo is not None and v < lo:
        raise StateInvalid(f"{where}: must be at least {lo}, not {v}")
    return v


def opt_int(v: Any, where: str, **kw: Any) -> int | None:
    return None if v is None else integer(v, where, **kw)


def boolean(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise StateInvalid(f"{where}: true or false is needed, not {_show(v)}")
    return v


def text(v: Any, where: str, *, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(v, str):
        raise StateInvalid(f"{where}: a string is needed, not {_show(v)}")
    if choices is not None and v not in choices:
        raise StateInvalid(f"{where}: one of {', '.join(choices)} is needed, not {v!r}")
    return v


def opt_text(v: Any, where: str) -> str | None:
    return None if v is None else text(v, where)


def obj(v: Any, where: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object holding at least ``keys``."""
    if not isinstance(v, dict):
        raise StateInvalid(f"{where}: an object is needed, not {_show(v)}")
    missing = [k for k in keys if k not in v]
    if missing:
        raise StateInvalid(f"{where}: missing {', '.join(missing)}")
    return v


def seq(v: Any, where: str, n: int | None = None) -> list[Any]:
    if not isinstance(v, list):
        raise StateInvalid(f"{where}: a list is needed, not {_show(v)}")
    if n is not None and len(v) != n:
        raise StateInvalid(f"{where}: {n} items are needed, not {len(v)}")
    return v


def nums(v: Any, where: str, **kw: Any) -> list[float]:
    return [num(x, f"{where}[{i}]", **kw) for i, x in enumerate(seq(v, where))]


def ints(v: Any, where: str) -> list[int]:
    return [integer(x, f"{where}[{i}]") for i, x in enumerate(seq(v, where))]


def mapping(v: Any, where: str, value: Callable[[Any, str], Any]) -> dict[str, Any]:
    """An object whose every value passes ``value(v, where)``."""
    return {k: value(x, f"{where}.{k}") for k, x in obj(v, where).items()}


def _show(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, float) else repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


# --------------------------------------------------------------------------- the file


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def dumps(body: dict[str, Any]) -> bytes:
    """The state document for ``body`` (strict JSON: a non-finite float in ``body`` is a bug and raises)."""
    doc = {"format": FORMAT, "version": VERSION, "sha256": _digest(body), "body": body}
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def write(path: Path, body: dict[str, Any]) -> None:
    """Write the state atomically (temporary file in the same directory, fsync, rename), readable by its owner only."""
    atomic_write(path, dumps(body), mode=0o600)


def read(path: Path) -> dict[str, Any]:
    """The body of the state file at ``path``, after its format, version and checksum are checked.

    Raises :class:`MonitorStateError` with one line saying what is wrong and what to do.
    """
    fresh = "move it away to start learning afresh"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MonitorStateError(f"monitor state file {path} cannot be read ({exc.strerror or exc})") from exc
    if raw[:1] == b"\x80":
        raise MonitorStateError(f"monitor state file {path} is in the old pickle format, which is never loaded (a pickle can run code); {fresh}")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MonitorStateError(f"monitor state file {path} is not a JSON state file ({str(exc).splitlines()[0][:80]}); {fresh}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise MonitorStateError(f"monitor state file {path} is not a carbonedge monitor state file; {fresh}")
    if doc.get("version") != VERSION:
        raise MonitorStateError(f"monitor state file {path} is version {doc.get('version')!r}, this monitor reads version {VERSION}; {fresh}")
    body = doc.get("body")
    if not isinstance(body, dict) or doc.get("sha256") != _digest(body):
        raise MonitorStateError(f"monitor state file {path} fails its checksum (damaged or edited); {fresh}")
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")

"""InfluxDB v1 HTTP API: the one client (``/write`` line protocol, ``/query`` InfluxQL) and the one set of quoting rules.

Every part of carbonedge that talks to InfluxDB uses :class:`InfluxClient`: the collector (writes, replay
checks), analytics (queries, alerts, EnPI and carbon points), ``verify``, ``status``, the dashboard checker
and the local service runner. InfluxDB 1.x speaks this API natively; 2.x and 3.x through their v1
compatibility endpoints.

Retries. A request that fails for a reason that may pass (no connection, timeout, HTTP 5xx, 429) is tried
again up to ``attempts`` times with exponential backoff (:class:`Backoff`, honouring ``Retry-After``).
A refusal that will not pass by itself (bad query, bad line, 401/403, 404) is raised at once. Errors are
one line that names the server and the reason, never the URL-encoded request.

Quoting. InfluxQL (:func:`quote_ident`, :func:`quote_literal`) and line protocol (:func:`lp_measurement`,
:func:`lp_tag`, :func:`lp_field_key`, :func:`lp_string`) follow what InfluxDB 1.6 actually parses
(tests/test_influx_quoting.py checks each rule against a real server). Line protocol has no escape for a
newline in a name or tag, nor for a backslash at the end of a tag or right before a character that must be
escaped: such values are refused with ``ValueError`` instead of being stored as something else.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import requests

from carbonedge.errors import QueryError, WriteError

# ---------------------------------------------------------------------------------------------- InfluxQL


def quote_ident(name: str) -> str:
    """An InfluxQL identifier (measurement, tag key, field key, database) in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def quote_literal(value: str) -> str:
    """An InfluxQL string literal in single quotes (a tag value or string field to compare with)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def time_range(start_ms: int, end_ms: int, *, end_inclusive: bool = True) -> str:
    """``time >= start AND time <= end`` (or ``< end``) in milliseconds."""
    return f"time >= {int(start_ms)}ms AND time {'<=' if end_inclusive else '<'} {int(end_ms)}ms"


# ----------------------------------------------------------------------------------------- line protocol
_MEAS = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
# InfluxDB 1.x reads a backslash in a name or tag as itself, except before a character it escapes; one
# right before such a character, or at the very end, cannot be written so that it reads back the same.
_UNWRITABLE_MEAS = re.compile(r"\\(?=[, ])|\\$|[\n\r]")
_UNWRITABLE_KEY = re.compile(r"\\(?=[, =])|\\$|[\n\r]")


def _check(value: str, pattern: re.Pattern[str], what: str) -> None:
    if not value:
        raise ValueError(f"an empty {what} cannot be written to InfluxDB")
    if pattern.search(value):
        raise ValueError(f"{what} {value!r} cannot be written to InfluxDB line protocol "
                         "(a line break, or a backslash at the end or before a space, comma or '=')")


def lp_measurement(name: str) -> str:
    """A measurement name for line protocol (commas and spaces escaped)."""
    _check(name, _UNWRITABLE_MEAS, "measurement name")
    return name.translate(_MEAS)


def lp_tag(value: str) -> str:
    """A tag key or tag value for line protocol (commas, spaces and '=' escaped)."""
    _check(value, _UNWRITABLE_KEY, "tag")
    return value.translate(_KEY)


def lp_field_key(name: str) -> str:
    """A field key for line protocol (same rules as tags)."""
    _check(name, _UNWRITABLE_KEY, "field key")
    return name.translate(_KEY)


def lp_string(value: str) -> str:
    """A string field value: quoted, backslashes and double quotes escaped, kept on one line.

    Line breaks become spaces: every point is one line, so that a body can be split on newlines (the
    collector isolates refused lines and spools bodies that way). String fields carry messages and JSON
    details, never figures.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\r\n", " ").replace("\n", " ").replace("\r", " ") + '"'


def lp_line(measurement: str, tags: dict[str, str], fields: dict[str, float | int | str | bool], ts: int) -> str:
    """One point, tags sorted (as InfluxDB stores them). Floats are written to round-trip exactly; NaN and
    infinities are refused (``ValueError``), as InfluxDB would refuse the whole body."""
    key = lp_measurement(measurement) + "".join(f",{lp_tag(k)}={lp_tag(v)}" for k, v in sorted(tags.items()))
    parts = []
    for k, v in fields.items():
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, int):
            text = f"{v}i"
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"field {k} of {measurement} is {v}: InfluxDB stores only finite numbers")
            text = repr(v)
        else:
            text = lp_string(str(v))
        parts.append(f"{lp_field_key(k)}={text}")
    if not parts:
        raise ValueError(f"a point of {measurement} needs at least one field")
    return f"{key} {','.join(parts)} {int(ts)}"


# --------------------------------------------------------------------------------------------- errors


def http_reason(exc: BaseException) -> str:
    """The cause of a failed HTTP request in a few words, without the URL (requests puts the whole
    URL-encoded query into its messages)."""
    text = str(exc)
    for pattern, reason in ((r"Connection refused", "connection refused (is InfluxDB running, is the URL right?)"),
                            (r"Name or service not known|nodename nor servname|getaddrinfo failed|Temporary failure in name resolution",
                             "cannot resolve the host name"),
                            (r"timed out|Timeout", "no answer (timed out)"), (r"CERTIFICATE_VERIFY_FAILED", "TLS certificate rejected"),
                            (r"Connection reset|RemoteDisconnected|Connection aborted", "the connection was closed")):
        if re.search(pattern, text):
            return reason
    return type(exc).__name__


def _server_says(r: requests.Response) -> str:
    """InfluxDB's own message for a refused request (its JSON ``error``), on one short line."""
    try:
        body = r.json()
        text = str(body.get("error", "")) if isinstance(body, dict) else ""
    except ValueError:
        text = ""
    text = text or r.text or r.reason or ""
    text = " ".join(text.split())
    return text[:300]


class Backoff:
    """Exponential backoff with a cap: ``first_s``, twice that, … up to ``cap_s``.

    Used blocking by :class:`InfluxClient` (``sleep``) and non-blocking by the collector's writer loops
    (``ready``/``failed``/``reset``).
    """

    def __init__(self, first_s: float = 0.2, cap_s: float = 10.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.delay = first_s
        self.next_at = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self.next_at

    def failed(self, hint_s: float | None = None) -> float:
        """Record a failure; returns how long to wait before the next attempt."""
        d = min(self.cap_s, max(self.delay, hint_s or 0.0))
        self.next_at = time.monotonic() + d
        self.delay = min(self.cap_s, self.delay * 2)
        return d

    def reset(self) -> None:
        self.delay = self.first_s
        self.next_at = 0.0


def _retry_after(r: requests.Response) -> float | None:
    ra = r.headers.get("Retry-After")
    return float(ra) if ra and ra.isdigit() else None


# --------------------------------------------------------------------------------------------- client


class InfluxClient:
    """One InfluxDB database over the v1 HTTP API, on one keep-alive session.

    ``attempts`` is how often a request is tried in all when it fails for a passing reason; ``1`` leaves
    retrying to the caller (the collector, which spools to disk between attempts).
    """

    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None,
                 retention_policy: str | None = None, timeout_s: float = 30.0, attempts: int = 3,
                 backoff_s: float = 0.5, backoff_cap_s: float = 8.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.session = requests.Session()
        if username:
            self.session.auth = (username, password or "")
        self.params = {"db": database, "precision": "ms"}
        if retention_policy:
            self.params["rp"] = retention_policy
        self._write_url = f"{self.url}/write"
        self._query_url = f"{self.url}/query"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing
    def write_once(self, body: bytes) -> None:
        """POST line protocol (ms precision) once; raise :class:`WriteError` with ``retryable`` and ``status``.

        Retryable: no connection, 5xx, 429 (``retry_after`` from its header) and 401/403 (a credential an
        operator can fix while the data waits); a 400/413/422 refusal is not.
        """
        try:
            r = self.session.post(self._write_url, params=self.params, data=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise WriteError(f"InfluxDB at {self.url}: {http_reason(exc)}", retryable=True) from None
        if r.status_code == 204 or r.status_code == 200:
            return
        retry = r.status_code >= 500 or r.status_code in (401, 403, 429)
        err = WriteError(f"InfluxDB at {self.url} refused the write (HTTP {r.status_code}): {_server_says(r)}",
                         status=r.status_code, retryable=retry)
        err.retry_after = _retry_after(r)  # type: ignore[attr-defined]
        raise err

    def write(self, body: bytes | str, *, what: str = "points") -> None:
        """Write one body, retrying passing failures (not 401/403: those need a person) with backoff."""
        data = body.encode() if isinstance(body, str) else body
        backoff = Backoff(self.backoff_s, self.backoff_cap_s)
        for attempt in range(1, self.attempts + 1):
            try:
                self.write_once(data)
                return
            except WriteError as exc:
                transient = exc.retryable and exc.status not in (401, 403)
                if not transient or attempt == self.attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise WriteError(f"{exc} (writing {what}{tries})", status=exc.status, retryable=exc.retryable) from None
                time.sleep(backoff.failed(getattr(exc, "retry_after", None)))

    def write_lines(self, lines: Sequence[str], *, what: str = "points", batch: int = 5000) -> int:
        """Write ``lines`` in bodies of ``batch`` points; returns how many were written.

        Rewriting a point with the same measurement, tags and timestamp overwrites it, so a repeated
        write (after a retry) is harmless.
        """
        for i in range(0, len(lines), batch):
            self.write("\n".join(lines[i: i + batch]), what=what)
        return len(lines)

    # -- querying
    def _post_query(self, q: str, params: dict[str, str]) -> requests.Response:
        backoff = Backoff(self.backoff_s, self.backoff_cap_s)
        for attempt in range(1, self.attempts + 1):
            try:
                r = self.session.post(self._query_url, params=params, data={"q": q}, timeout=self.timeout_s)
            except requests.RequestException as exc:
                if attempt == self.attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise QueryError(f"InfluxDB at {self.url}: {http_reason(exc)}{tries}", retryable=True) from None
                time.sleep(backoff.failed())
                continue
            if (r.status_code >= 500 or r.status_code == 429) and attempt < self.attempts:
                time.sleep(backoff.failed(_retry_after(r)))
                continue
            return r
        raise AssertionError("unreachable")

    def results(self, q: str, *, database: bool = True) -> list[dict[str, Any]]:
        """Run InfluxQL (one or more statements, sent in the request body); return one result per statement.

        Times come back as epoch milliseconds. A statement InfluxDB refuses raises :class:`QueryError`
        naming the server, its reason and the start of the statement.
        """
        params = {"epoch": "ms"}
        if database:
            params["db"] = self.database
        r = self._post_query(q, params)
        if r.status_code != 200:
            raise QueryError(f"InfluxDB at {self.url} refused the query (HTTP {r.status_code}): {_server_says(r)}; query: {_short(q)}",
                             status=r.status_code, retryable=r.status_code >= 500 or r.status_code == 429)
        try:
            body = r.json()
        except ValueError:
            raise QueryError(f"InfluxDB at {self.url} answered the query with something that is not JSON", retryable=True) from None
        results = list(body.get("results", []))
        for res in results:
            if "error" in res:
                raise QueryError(f"InfluxDB at {self.url} refused the query: {res['error']}; query: {_short(q)}")
        return results

    def query(self, q: str) -> list[dict[str, Any]]:
        """The series (``name``, ``tags``, ``columns``, ``values``) of the first statement of ``q``."""
        results = self.results(q)
        return list(results[0].get("series", [])) if results else []

    def command(self, q: str) -> None:
        """A statement that returns nothing (``CREATE DATABASE``, ``DROP …``), run without a database."""
        self.results(q, database=False)

    def create_database(self, name: str | None = None) -> None:
        self.command(f"CREATE DATABASE {quote_ident(name or self.database)}")

    def ping(self) -> bool:
        """True when the server answers ``/ping`` (one attempt, no retries)."""
        try:
            return self.session.get(f"{self.url}/ping", timeout=min(self.timeout_s, 2.0)).status_code == 204
        except requests.RequestException:
            return False


def rows(series: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Each row of each series as a dict (``time`` plus the columns, tags of a GROUP BY merged in)."""
    for s in series:
        cols = s["columns"]
        tags = s.get("tags") or {}
        for values in s.get("values", []):
            rec = dict(zip(cols, values, strict=False))
            if tags:
                rec = {**tags, **rec}
            yield rec


def _short(q: str) -> str:
    q = " ".join(q.split())
    return q if len(q) <= 160 else q[:157] + "..."

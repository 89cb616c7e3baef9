"""The project's source list: every key a report, the code or the docs cite ([E3], [L3], [S36] ...).

Keys live in ``analytics/carbon/data/sources-<version>.json`` and are printed in
``docs/sources.md`` (regenerate with ``python -m carbonedge.analytics.carbon.sources > docs/sources.md``).
A report cites sources only through :func:`cite`, which refuses an unknown key, so
every citation a user reads resolves to an entry of that list.
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from carbonedge.errors import ConfigError

DATA_DIR = Path(__file__).parent / "data"
VERSION = "2026.1"
_KEY = re.compile(r"^[A-Z]{1,3}[0-9]{1,2}$")
_BRACKET = re.compile(r"\[([A-Z]{1,3}[0-9]{1,2}(?:\s*[,–-]\s*(?:[A-Z]{1,3})?[0-9]{1,2})*)\]")


@cache
def sources(version: str = VERSION) -> dict[str, dict[str, Any]]:
    """All sources by key."""
    doc = json.loads((DATA_DIR / f"sources-{version}.json").read_text())
    return {s["key"]: s for s in doc["sources"]}


def expand(text: str) -> list[str]:
    """Keys inside one bracket's text: ``E1-E5`` and ``E1–5`` expand, ``S1, S2`` split."""
    out: list[str] = []
    for part in re.split(r"\s*,\s*", text.strip()):
        m = re.match(r"^([A-Z]{1,3})([0-9]{1,2})\s*[–-]\s*(?:([A-Z]{1,3}))?([0-9]{1,2})$", part)
        if m:
            pre, a, pre2, b = m.group(1), int(m.group(2)), m.group(3) or m.group(1), int(m.group(4))
            if pre2 != pre or b < a:
                raise ValueError(f"bad source range {part!r}")
            out += [f"{pre}{i}" for i in range(a, b + 1)]
        else:
            out.append(part)
    return out


def keys_in(text: str) -> list[str]:
    """Every source key cited in brackets in ``text`` (ranges expanded)."""
    return [k for m in _BRACKET.finditer(text) for k in expand(m.group(1))]


def unresolved(text: str) -> list[str]:
    """Keys cited in ``text`` that are not in the source list."""
    known = sources()
    return sorted({k for k in keys_in(text) if k not in known})


def cite(*keys: str) -> str:
    """The bracket citation for keys that are in the list; an unknown key is a programming or data error."""
    known = sources()
    bad = [k for k in keys if k not in known]
    if bad:
        raise ConfigError(f"source key(s) {', '.join(bad)} are not in the source list (analytics/carbon/data/sources-{VERSION}.json)")
    return "[" + ", ".join(keys) + "]"


def entries(keys: list[str]) -> list[dict[str, Any]]:
    """The list entries of ``keys`` (for a report's own source list)."""
    known = sources()
    return [known[k] for k in dict.fromkeys(keys) if k in known]


def markdown() -> str:
    """docs/sources.md: every source by group."""
    lines = ["# Sources", "",
             "Every key cited in brackets in carbonedge's reports, exports, code and docs (`[E3]`, `[L3]`, `[S36]` …) is",
             "listed here. The list is `analytics/carbon/data/sources-" + VERSION + ".json`; this page is generated from it",
             "(`python -m carbonedge.analytics.carbon.sources > docs/sources.md`) and a test keeps both in step. The `L` keys are the",
             "primary legal texts and standards; the others are the technical and secondary sources behind the simulators,",
             "factors and hints. An entry marked *not retrievable here* was known only through the secondary sources it names:",
             "check it against the primary text before relying on it in a verified report.", ""]
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in sources().values():
        groups.setdefault(s["group"], []).append(s)
    order = ["Primary legal texts and standards"] + sorted(g for g in groups if g != "Primary legal texts and standards")
    for g in order:
        lines += [f"## {g}", "", "| key | source | where |", "|---|---|---|"]
        for s in groups[g]:
            where = (s["where"] or "—").replace("|", "\\|")
            lines.append(f"| {s['key']} | {s['title'].replace('|', chr(92) + '|')} | {where} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown())
